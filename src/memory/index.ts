// Public API of src/memory (filled in by the module).
export {};
