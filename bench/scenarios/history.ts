/**
 * Scenario 8 — the event history's cost: scenario 1's burst again with `history: false`, judged
 * against scenario 1 (history on, the default) of the same run.
 */
import { checkTarget, formatRatio, type Scenario } from '../lib';
import { measureThroughput, runMeasurement, throughputWorkflows } from './throughput';

export const historyScenario: Scenario = {
  id: 8,
  name: 'history',
  title: 'the event history: scenario 1 with history off, vs scenario 1 (history on)',
  async run({ quick, databaseUrl, earlier, log }) {
    const run = await measureThroughput(databaseUrl, throughputWorkflows(quick), log, undefined, {
      history: false,
    });
    const withHistory = earlier.get('throughput')?.hopsPerSecond;
    const ratio = withHistory ? withHistory / run.hopsPerSecond : null;
    return runMeasurement(run, {
      of: 'hop (under load)',
      ratio: ratio === null ? null : { to: 'history on (scenario 1) / history off', value: ratio },
      targets: [
        checkTarget('hops/s with history vs without', '≥ 0.9×', ratio, (value) => value >= 0.9, formatRatio),
      ],
    });
  },
};
