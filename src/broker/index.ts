// Public API of src/broker (filled in by the module).
export {};
