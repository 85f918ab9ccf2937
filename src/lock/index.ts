// Public API of src/lock (filled in by the module).
export {};
