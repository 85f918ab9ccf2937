/**
 * The orchestrator fixture of the test suite. Its implementation is the readable example in
 * `examples/step-orchestrator.ts` (also used by the demo), so tests and the demo exercise one and
 * the same orchestrator protocol: validate subject → lock → read → compute → write(prev) → unlock.
 */
export * from '../../examples/step-orchestrator';
