import assert from 'node:assert/strict';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import bunyan from 'bunyan';
import pino from 'pino';
import winston from 'winston';
import { consoleLogger, type Logger, type LogLevel, silentLogger, writeLog } from '../../src/shared/logger';

/** A real writable stream that keeps what the logging library wrote to it. */
function capture() {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return {
    stream,
    text: () => chunks.join(''),
    json: () =>
      chunks
        .join('')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
  };
}

// Give stream-based loggers (winston) a turn to flush.
const flushed = () => new Promise((resolve) => setImmediate(resolve));

const FIELDS = { queues: ['com.a', 'com.b'], attempt: 3 };

function logEach(logger: Logger) {
  for (const level of ['info', 'warn', 'error'] as LogLevel[])
    writeLog(logger, level, `broker ${level}`, FIELDS);
}

// Each library's own record shape: the message where that library puts messages, the fields where it puts fields.
describe('logger adapters with the real libraries', () => {
  // pino and bunyan share one shape: numeric levels, `msg`, the fields as top-level keys.
  const FIELDS_FIRST_RECORDS = [
    [30, 'broker info', FIELDS.queues, 3],
    [40, 'broker warn', FIELDS.queues, 3],
    [50, 'broker error', FIELDS.queues, 3],
  ];
  const fieldsFirstShape = (records: any[]) =>
    records.map((record) => [record.level, record.msg, record.queues, record.attempt]);

  it('pino: msg holds the message, the fields are top-level keys, the level is pino’s number', () => {
    const out = capture();
    logEach(pino({ level: 'debug' }, out.stream));
    assert.deepEqual(fieldsFirstShape(out.json()), FIELDS_FIRST_RECORDS);
  });

  it('bunyan: msg holds the message, the fields are top-level keys', () => {
    const out = capture();
    logEach(bunyan.createLogger({ name: 'app', streams: [{ level: 'debug', stream: out.stream }] }));
    assert.deepEqual(fieldsFirstShape(out.json()), FIELDS_FIRST_RECORDS);
  });

  it('winston: message holds the message, the fields are merged as metadata', async () => {
    const out = capture();
    const logger = winston.createLogger({
      level: 'debug',
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: out.stream })],
    });
    logEach(logger);
    await flushed();
    const records = out.json();
    assert.deepEqual(
      records.map((record) => [record.level, record.message, record.queues, record.attempt]),
      [
        ['info', 'broker info', FIELDS.queues, 3],
        ['warn', 'broker warn', FIELDS.queues, 3],
        ['error', 'broker error', FIELDS.queues, 3],
      ],
    );
  });

  it('console: the message first, then the fields as console prints objects, to stdout or stderr', () => {
    const stdout = capture();
    const stderr = capture();
    logEach(new Console({ stdout: stdout.stream, stderr: stderr.stream }));
    assert.equal(stdout.text(), "broker info { queues: [ 'com.a', 'com.b' ], attempt: 3 }\n");
    assert.equal(
      stderr.text(),
      "broker warn { queues: [ 'com.a', 'com.b' ], attempt: 3 }\n" +
        "broker error { queues: [ 'com.a', 'com.b' ], attempt: 3 }\n",
    );
  });

  it('secrets are masked in every library’s output', async () => {
    const secret = { url: 'postgres://app:s3cr3t-pw@db/x' };
    const pinoOut = capture();
    writeLog(pino(pinoOut.stream), 'info', 'connect postgres://app:s3cr3t-pw@db/x', secret);
    const winstonOut = capture();
    writeLog(
      winston.createLogger({ transports: [new winston.transports.Stream({ stream: winstonOut.stream })] }),
      'info',
      'connect postgres://app:s3cr3t-pw@db/x',
      secret,
    );
    await flushed();
    for (const text of [pinoOut.text(), winstonOut.text()]) {
      assert.ok(text.includes('connect postgres://app:[REDACTED]@db/x'), text);
      assert.ok(!text.includes('s3cr3t-pw'), text);
    }
  });
});

describe('records the logger drops', () => {
  /** Log fields that count how often they are read (redacting a record reads every field). */
  function countingFields() {
    const counter = { reads: 0 };
    return {
      counter,
      fields: {
        get detail() {
          counter.reads++;
          return 'postgres://app:secret@db/app';
        },
      },
    };
  }

  it('are not redacted for the silent logger, nor at levels the console logger drops', () => {
    const { counter, fields } = countingFields();
    for (const level of ['debug', 'info', 'warn', 'error'] as LogLevel[]) {
      writeLog(silentLogger, level, 'dropped', fields);
    }
    writeLog(consoleLogger, 'debug', 'dropped', fields);
    writeLog(consoleLogger, 'info', 'dropped', fields);
    assert.equal(counter.reads, 0);
  });

  it('are redacted and written for any other logger, also one with no-op methods of its own', () => {
    const { counter, fields } = countingFields();
    const written: unknown[][] = [];
    writeLog({ info: (...args) => written.push(args), error() {} }, 'debug', 'kept', fields);
    writeLog({ info() {}, error() {} }, 'info', 'kept', fields);
    assert.equal(counter.reads, 2);
    assert.deepEqual(written, [['kept', { detail: 'postgres://app:[REDACTED]@db/app' }]]);
  });
});
