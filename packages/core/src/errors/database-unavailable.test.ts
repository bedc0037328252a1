import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { AppError } from './app-error.ts';
import { isDatabaseUnavailable } from './database-unavailable.ts';
import { closedPort } from '@steward/db/testing/closed-port';

/** A server error as postgres.js builds it (src/errors.js: PostgresError, the fields of the message). */
function serverError(code: string): Error {
  return new postgres.PostgresError({ message: 'from the server', code, severity: 'FATAL' } as never);
}

/** A driver error as postgres.js builds it (src/errors.js `connection`: code and errno the same string). */
function driverError(code: string): Error {
  return Object.assign(new Error(`write ${code} 127.0.0.1:5432`), {
    code,
    errno: code,
    address: '127.0.0.1',
  });
}

/** A socket error as Node builds it. */
function socketError(code: string, syscall: string): Error {
  return Object.assign(new Error(`${syscall} ${code} 127.0.0.1:5432`), { code, errno: -1, syscall });
}

/** The same, with the statement postgres.js attaches to the errors it fails a query with (non-enumerable). */
function failedQuery(error: Error): Error {
  return Object.defineProperties(error, {
    query: { value: 'select 1', enumerable: false },
    parameters: { value: [], enumerable: false },
  });
}

describe('isDatabaseUnavailable', () => {
  it("is true for postgres.js's connection errors", () => {
    for (const code of [
      'CONNECTION_CLOSED',
      'CONNECTION_ENDED',
      'CONNECTION_DESTROYED',
      'CONNECT_TIMEOUT',
      'QUEUE_TIMEOUT',
    ])
      expect(isDatabaseUnavailable(driverError(code)), code).toBe(true);
  });

  it('is true for socket errors postgres.js failed a query with, whichever call failed', () => {
    for (const code of [
      'ECONNREFUSED',
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      'ENOTFOUND',
      'EAI_AGAIN',
      'EHOSTUNREACH',
    ])
      for (const syscall of ['connect', 'read', 'write', 'getaddrinfo'])
        expect(isDatabaseUnavailable(failedQuery(socketError(code, syscall))), `${code} ${syscall}`).toBe(
          true,
        );
  });

  it('is true for a failure to connect as sql.reserve() passes it on (unmarked)', () => {
    for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH'])
      expect(isDatabaseUnavailable(socketError(code, 'connect')), code).toBe(true);
    for (const code of ['ENOTFOUND', 'EAI_AGAIN'])
      expect(isDatabaseUnavailable(socketError(code, 'getaddrinfo')), code).toBe(true);
  });

  it('is false for an unmarked error of an established socket (it may be any client)', () => {
    expect(isDatabaseUnavailable(socketError('ECONNRESET', 'read'))).toBe(false);
    expect(isDatabaseUnavailable(socketError('EPIPE', 'write'))).toBe(false);
    expect(isDatabaseUnavailable({ code: 'ECONNREFUSED' })).toBe(false);
  });

  it('is true for the SQLSTATEs of a server that cannot serve now', () => {
    for (const code of [
      '08000', // connection_exception
      '08003', // connection_does_not_exist
      '08006', // connection_failure
      '08001', // sqlclient_unable_to_establish_sqlconnection
      '08004', // sqlserver_rejected_establishment_of_sqlconnection
      '57P01', // admin_shutdown (pg_terminate_backend)
      '57P02', // crash_shutdown
      '57P03', // cannot_connect_now
      '53000', // insufficient_resources
      '53100', // disk_full
      '53200', // out_of_memory
      '53300', // too_many_connections
      '40001', // serialization_failure: rolled back whole, safe to retry
      '40P01', // deadlock_detected: likewise
    ])
      expect(isDatabaseUnavailable(serverError(code)), code).toBe(true);
  });

  it('is false for SQLSTATEs that blame the request or are permanent', () => {
    for (const code of [
      '23505', // unique_violation
      '23503', // foreign_key_violation
      '22P02', // invalid_text_representation
      '42P01', // undefined_table
      '42501', // insufficient_privilege
      '08P01', // protocol_violation: a client bug
      '57P04', // database_dropped
      '57014', // query_canceled (statement timeout)
      '53400', // configuration_limit_exceeded: this statement's own limit
      '25P02', // in_failed_sql_transaction
      '40002', // transaction_integrity_constraint_violation
    ])
      expect(isDatabaseUnavailable(serverError(code)), code).toBe(false);
  });

  it('is false for anything else', () => {
    expect(isDatabaseUnavailable(undefined)).toBe(false);
    expect(isDatabaseUnavailable(null)).toBe(false);
    expect(isDatabaseUnavailable('ECONNREFUSED')).toBe(false);
    expect(isDatabaseUnavailable(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).toBe(false);
    expect(isDatabaseUnavailable(new TypeError("Cannot read properties of null (reading 'write')"))).toBe(
      false,
    );
    expect(isDatabaseUnavailable(new AppError('INTERNAL', 'boom'))).toBe(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('x'), { code: 57 }))).toBe(false);
    // A SQLSTATE-looking code on an error that is not the server's: not trusted.
    expect(isDatabaseUnavailable(Object.assign(new Error('x'), { code: '57P01' }))).toBe(false);
    // postgres.js's other generic errors are bugs or misuse, not an outage.
    expect(isDatabaseUnavailable(driverError('UNSAFE_TRANSACTION'))).toBe(false);
    expect(isDatabaseUnavailable(driverError('MAX_PARAMETERS_EXCEEDED'))).toBe(false);
  });

  it('recognises what postgres.js really throws when nothing listens', async () => {
    const port = await closedPort();
    const sql = postgres(`postgres://nobody@127.0.0.1:${port}/none`, { max: 1, connect_timeout: 2 });
    try {
      const viaQuery = await sql`select 1`.then(
        () => undefined,
        (e: unknown) => e,
      );
      const viaReserve = await sql.reserve().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((viaQuery as { code?: string }).code).toBe('ECONNREFUSED');
      expect(isDatabaseUnavailable(viaQuery)).toBe(true);
      expect((viaReserve as { code?: string }).code).toBe('ECONNREFUSED');
      expect('query' in (viaReserve as object)).toBe(false); // the unmarked case above
      expect(isDatabaseUnavailable(viaReserve)).toBe(true);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
