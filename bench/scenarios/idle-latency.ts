/**
 * Scenario 2 — hop latency when idle: one workflow at a time (8 hops each), so every figure is the
 * broker's own path (commit, NOTIFY, fetch, handler) and never a queue.
 */
import { checkTarget, formatMs, type Scenario, summarize } from '../lib';
import { SEQUENTIAL_STEPS, startWorkflowRig } from '../workflow';
import { runMeasurement } from './throughput';

export const idleLatencyScenario: Scenario = {
  id: 2,
  name: 'latency',
  title: 'hop latency, idle: one 8-hop workflow at a time',
  async run({ quick, databaseUrl, earlier, log }) {
    const workflows = quick ? 20 : 200;
    const rig = await startWorkflowRig(databaseUrl, SEQUENTIAL_STEPS);
    try {
      // A few workflows first so connections, prepared plans and JIT are warm, as in a live service.
      await rig.run(3, 'sequential', 30_000);
      log(`running ${workflows} workflows one at a time`);
      const run = await rig.run(workflows, 'sequential', 300_000);
      const hop = summarize(run.hopLatencies);
      const workflow = summarize(run.workflowLatencies);
      const baselineDetails = earlier.get('baseline')?.details as
        | { idleHopLatencyMs?: { p50: number } }
        | undefined;
      const baselineHop = baselineDetails?.idleHopLatencyMs?.p50;
      return runMeasurement(run, {
        of: 'hop (idle)',
        ratio: baselineHop ? { to: 'raw pg-boss idle hop p50', value: hop.p50 / baselineHop } : null,
        targets: [
          checkTarget('hop p50', '≤ 4 ms', hop.p50, (value) => value <= 4, formatMs),
          checkTarget('hop p99', '≤ 15 ms', hop.p99, (value) => value <= 15, formatMs),
          checkTarget('workflow p50 (8 hops)', '≤ 35 ms', workflow.p50, (value) => value <= 35, formatMs),
          checkTarget(
            'commits per hop (idle)',
            '≤ 1.5',
            run.costPerHop.writeTransactions,
            (value) => value <= 1.5,
          ),
        ],
      });
    } finally {
      await rig.stop();
    }
  },
};
