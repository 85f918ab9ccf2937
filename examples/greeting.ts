/** The Arvo service of the examples: a contract and its handler, as any Arvo app defines them. */
import { createArvoContract } from 'arvo-core';
import { createArvoEventHandler } from 'arvo-event-handler';
import { z } from 'zod';

export const greetingContract = createArvoContract({
  uri: '#/examples/greeting',
  type: 'com.example.greeting',
  versions: {
    '1.0.0': {
      accepts: z.object({ name: z.string() }),
      emits: { 'evt.example.greeting.done': z.object({ message: z.string() }) },
    },
  },
});

/** Answers `com.example.greeting` with `evt.example.greeting.done`; its queue is the contract's type. */
export const greetingService = createArvoEventHandler({
  contract: greetingContract,
  executionunits: 0.1,
  handler: {
    '1.0.0': async ({ event }) => ({
      type: 'evt.example.greeting.done' as const,
      data: { message: `Hello, ${event.data.name}!` },
    }),
  },
});
