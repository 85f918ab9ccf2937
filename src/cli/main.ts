#!/usr/bin/env node
// arvo-postgres command line (see README, Operations).
export {};
