/**
 * Scenario 8 — the event history's cost: scenario 1's burst with the history on (the default) and
 * off, interleaved in pairs on one database, judged by the median of the pairs' ratios. Comparing
 * with scenario 1's single run (another database, minutes earlier) measured the machine's drift as
 * much as the history (0.66× and 0.91× on the same code); in a pair both runs see the same load and
 * table sizes, alternating which goes first (on-off, off-on, …) cancels drift within a pair, and the
 * median drops a pair a neighbour's burst landed on.
 */
import { checkTarget, formatRatio, round, type Scenario } from '../lib';
import type { WorkflowRun } from '../workflow';
import { measureThroughput, runMeasurement, throughputWorkflows } from './throughput';

/** Pairs of runs (history on, history off); an odd count, so the median is one pair's ratio. */
function pairCount(quick: boolean): number {
  return quick ? 3 : 5;
}

/** The element of odd-length `values` whose `key` is the median. */
function medianBy<T>(values: T[], key: (value: T) => number): T {
  return [...values].sort((a, b) => key(a) - key(b))[(values.length - 1) >> 1] as T;
}

export const historyScenario: Scenario = {
  id: 8,
  name: 'history',
  title: 'the event history: scenario 1 with history on vs off, interleaved pairs on one database',
  async run({ quick, databaseUrl, log }) {
    const pairs: { on: WorkflowRun; off: WorkflowRun; ratio: number }[] = [];
    for (let pair = 0; pair < pairCount(quick); pair++) {
      const runs = new Map<boolean, WorkflowRun>();
      for (const history of pair % 2 === 0 ? [true, false] : [false, true]) {
        log(`pair ${pair + 1}: history ${history ? 'on' : 'off'}`);
        const options = history ? {} : { history: false as const };
        runs.set(
          history,
          await measureThroughput(databaseUrl, throughputWorkflows(quick), log, undefined, options),
        );
      }
      const on = runs.get(true)!;
      const off = runs.get(false)!;
      pairs.push({ on, off, ratio: on.hopsPerSecond / off.hopsPerSecond });
    }
    const median = medianBy(pairs, (pair) => pair.ratio);
    return runMeasurement(median.on, {
      of: 'hop (under load, history on)',
      ratio: { to: `history on / off, median of ${pairs.length} interleaved pairs`, value: median.ratio },
      targets: [
        checkTarget(
          'hops/s with history vs without',
          '≥ 0.9×',
          median.ratio,
          (value) => value >= 0.9,
          formatRatio,
        ),
      ],
      details: {
        pairRatios: pairs.map((pair) => round(pair.ratio, 3)),
        hopsPerSecondOn: pairs.map((pair) => round(pair.on.hopsPerSecond, 1)),
        hopsPerSecondOff: pairs.map((pair) => round(pair.off.hopsPerSecond, 1)),
      },
    });
  },
};
