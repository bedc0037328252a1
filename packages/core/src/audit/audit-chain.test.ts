/**
 * Tamper detection of the per-tenant audit chain. The chain is appended through the runtime role;
 * tampering is done with the owner (superuser) connection, i.e. by someone who can rewrite the
 * database but does not hold the master key. Every case uses a fresh tenant.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type Database } from '@steward/db/database';
import {
  createTestDatabase,
  runtimeUrl,
  TEST_MASTER_KEY,
  type TestDatabase,
} from '@steward/db/testing/test-database';
import { AuditLog } from './audit-log.ts';
import { verifyTenantAudit } from './audit-service.ts';
import { Checkpointer } from './checkpointer.ts';
import { CheckpointStore, type Checkpoint } from './checkpoint-store.ts';
import { verifyChain, type VerifyResult } from './verify-chain.ts';
import { MasterKey, parseMasterKey } from '../crypto/master-key.ts';
import type { Resources } from '../resources.ts';

const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const master = new MasterKey(parseMasterKey(TEST_MASTER_KEY)!);

interface Env {
  tdb: TestDatabase;
  db: Database;
  dataDir: string;
  audit: AuditLog;
  store: CheckpointStore;
  checkpointer: Checkpointer;
  res: Resources;
  close(): Promise<void>;
}

async function openEnv(): Promise<Env> {
  const tdb = await createTestDatabase();
  const db = createDatabase({ url: await runtimeUrl(tdb), max: 4 });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'steward-audit-test-'));
  const audit = new AuditLog(master);
  const store = new CheckpointStore(dataDir, master);
  const checkpointer = new Checkpointer(db, store, {
    onError: (e) => {
      throw e;
    },
  });
  // verifyTenantAudit reads only these; the rest of Resources belongs to the HTTP app.
  const res = { db, master, checkpoints: store } as Pick<
    Resources,
    'db' | 'master' | 'checkpoints'
  > as Resources;
  return {
    tdb,
    db,
    dataDir,
    audit,
    store,
    checkpointer,
    res,
    async close() {
      await db.close();
      await tdb.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function newTenant(env: Env): Promise<string> {
  const id = randomUUID();
  const slug = 't' + randomBytes(6).toString('hex');
  await env.db.withSystemAccess(
    (tx) => tx`insert into tenants (id, slug, name) values (${id}, ${slug}, ${slug})`,
  );
  return id;
}

/** Append `n` entries, `perTransaction` at a time, each transaction through withTenant. */
async function append(env: Env, tenantId: string, n: number, perTransaction = 1): Promise<void> {
  for (let done = 0; done < n;) {
    const batch = Math.min(perTransaction, n - done);
    await env.db.withTenant(tenantId, async (tx) => {
      for (let i = 0; i < batch; i++) {
        await env.audit.append(tx, tenantId, {
          actorType: 'user',
          actorId: randomUUID(),
          actorLabel: 'someone@example.test',
          action: 'thing.updated',
          targetType: 'thing',
          targetId: String(done + i + 1),
          requestId: 'req-' + (done + i + 1),
          ip: '203.0.113.7',
          details: { n: done + i + 1, nested: { list: [1, 'two', null], flag: true } },
        });
      }
    });
    done += batch;
  }
}

async function seededTenant(env: Env, n = 12): Promise<string> {
  const id = await newTenant(env);
  await append(env, id, n);
  return id;
}

const verify = (env: Env, tenantId: string) => verifyTenantAudit(env.res, tenantId);
const verifyWithout = (env: Env, tenantId: string, checkpoint?: Checkpoint) =>
  env.db.withTenant(tenantId, (tx) => verifyChain(tx, master, tenantId, checkpoint));

function expectBrokenAt(result: VerifyResult, seq: number, reason?: RegExp): void {
  expect(result, JSON.stringify(result)).toMatchObject({ ok: false, firstBrokenSeq: seq });
  if (reason) expect(result.reason).toMatch(reason);
}

async function entryHashAt(env: Env, tenantId: string, seq: number): Promise<string> {
  const [row] = await env.tdb.owner<{ hash: string }[]>`
    select hash from audit_log where tenant_id = ${tenantId} and seq = ${seq}`;
  return row!.hash;
}

let env: Env;
beforeAll(async () => {
  env = await openEnv();
});
afterAll(() => env?.close());

describe('an intact chain', () => {
  it('verifies, with every entry checked and no broken entry', async () => {
    const id = await seededTenant(env, 12);
    const result = await verify(env, id);
    expect(result).toEqual({ ok: true, checked: 12 });
  });

  it('verifies against a signed checkpoint of its head, and after more appends', async () => {
    const id = await seededTenant(env, 5);
    await env.checkpointer.flush([id]);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 5, checkpointSeq: 5 });
    await append(env, id, 3);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 8, checkpointSeq: 5 });
  });

  it('recorded entries are written at commit as one chain step, in order, and after earlier appends', async () => {
    const id = await newTenant(env);
    const entry = (action: string) => ({ actorType: 'system' as const, action, details: { action } });
    await env.db.withTenant(id, async (tx) => {
      await env.audit.record(tx, id, entry('a.recorded'));
      await env.audit.record(tx, id, entry('b.recorded'));
      // Nothing is written before the commit...
      expect(await tx`select 1 from audit_log where tenant_id = ${id}`).toHaveLength(0);
      // ...unless an immediate append follows: the recorded entries go first.
      await env.audit.append(tx, id, entry('c.appended'));
      await env.audit.record(tx, id, entry('d.recorded'));
      await env.audit.record(tx, id, entry('e.recorded'));
    });
    const rows = await env.tdb.owner<{ seq: string; action: string }[]>`
      select seq, action from audit_log where tenant_id = ${id} order by seq`;
    expect(rows.map((r) => [Number(r.seq), r.action])).toEqual([
      [1, 'a.recorded'],
      [2, 'b.recorded'],
      [3, 'c.appended'],
      [4, 'd.recorded'],
      [5, 'e.recorded'],
    ]);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 5 });
    // A transaction that fails writes none of its recorded entries.
    await expect(
      env.db.withTenant(id, async (tx) => {
        await env.audit.record(tx, id, entry('f.recorded'));
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    // Concurrent transactions each recording two entries keep the chain gap-free.
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        env.db.withTenant(id, async (tx) => {
          await env.audit.record(tx, id, entry(`x${i}.one`));
          await env.audit.record(tx, id, entry(`x${i}.two`));
        }),
      ),
    );
    expect(await verify(env, id)).toEqual({ ok: true, checked: 25 });
    const actions = (
      await env.tdb.owner<
        { action: string }[]
      >`select action from audit_log where tenant_id = ${id} order by seq`
    ).map((r) => r.action);
    for (let i = 0; i < 10; i++) expect(actions.indexOf(`x${i}.two`)).toBe(actions.indexOf(`x${i}.one`) + 1);
  });

  it('a head locked ahead (lockHead) is the one the next write uses; locking alone writes nothing', async () => {
    const id = await newTenant(env); // no head row yet: the write creates it
    const entry = (action: string) => ({ actorType: 'system' as const, action });
    const lockedAhead = (actions: string[]) =>
      env.db.withTenant(id, async (tx) => {
        const statement = tx`select pg_sleep(0.01)`.execute();
        env.audit.lockHead(tx, id); // pipelined behind the statement in flight
        env.audit.lockHead(tx, id); // a second call sends nothing more
        await statement;
        for (const action of actions) await env.audit.record(tx, id, entry(action));
      });
    await lockedAhead(['first.one', 'first.two']);
    await Promise.all(Array.from({ length: 8 }, (_, i) => lockedAhead([`x${i}.one`, `x${i}.two`])));
    await lockedAhead([]);
    await expect(
      env.db.withTenant(id, async (tx) => {
        const failing = tx`select 1/0`.execute();
        env.audit.lockHead(tx, id);
        await failing;
      }),
    ).rejects.toThrow(/division by zero/);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 18 });
    const actions = (
      await env.tdb.owner<
        { action: string }[]
      >`select action from audit_log where tenant_id = ${id} order by seq`
    ).map((r) => r.action);
    expect(actions.slice(0, 2)).toEqual(['first.one', 'first.two']);
    for (let i = 0; i < 8; i++) expect(actions.indexOf(`x${i}.two`)).toBe(actions.indexOf(`x${i}.one`) + 1);
  });

  it('a tenant without entries verifies as an empty chain', async () => {
    const id = await newTenant(env);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 0 });
  });

  it('concurrent transactions of two tenants append gap-free chains', async () => {
    const [a, b] = [await newTenant(env), await newTenant(env)];
    await Promise.all(Array.from({ length: 40 }, (_, i) => append(env, i % 2 ? a : b, 1)));
    for (const id of [a, b]) {
      expect(await verify(env, id)).toEqual({ ok: true, checked: 20 });
      const rows = await env.tdb.owner<
        { seq: string }[]
      >`select seq from audit_log where tenant_id = ${id} order by seq`;
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    }
  });

  it('an entry appended in a transaction that rolls back leaves no trace and no gap', async () => {
    const id = await seededTenant(env, 3);
    await expect(
      env.db.withTenant(id, async (tx) => {
        await env.audit.append(tx, id, { actorType: 'system', action: 'doomed' });
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    await append(env, id, 1);
    expect(await verify(env, id)).toEqual({ ok: true, checked: 4 });
    const [row] = await env.tdb
      .owner`select count(*)::int as n from audit_log where tenant_id = ${id} and action = 'doomed'`;
    expect(row).toEqual({ n: 0 });
  });
});

describe('tampering with the owner’s rights is detected and the first broken entry named', () => {
  it('a changed value in any column of an entry', async () => {
    const columns = await env.tdb.owner<{ name: string; type: string }[]>`
      select column_name as name, data_type as type from information_schema.columns
      where table_schema = 'public' and table_name = 'audit_log' and column_name not in ('tenant_id', 'seq')
      order by ordinal_position`;
    expect(columns.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'at',
        'actor_id',
        'action',
        'target_id',
        'outcome',
        'ip',
        'details',
        'prev_hash',
        'hash',
      ]),
    );
    for (const { name, type } of columns) {
      const id = await seededTenant(env, 8);
      const change =
        type === 'text'
          ? `coalesce(${name}, '') || 'x'`
          : type === 'jsonb'
            ? `${name} || '{"tampered": true}'`
            : type === 'timestamp with time zone'
              ? `coalesce(${name}, now()) + interval '1 second'`
              : undefined;
      if (!change)
        throw new Error(`audit-chain.test.ts: add a way to tamper with audit_log.${name} (${type})`);
      const updated = await env.tdb.owner.unsafe(
        `update audit_log set ${name} = ${change} where tenant_id = $1 and seq = 5 returning 1`,
        [id],
      );
      expect(updated.length).toBe(1);
      expectBrokenAt(await verify(env, id), 5);
    }
  });

  it('a changed entry: the reason says it was altered', async () => {
    const id = await seededTenant(env);
    await env.tdb.owner`update audit_log set action = 'nothing.happened' where tenant_id = ${id} and seq = 7`;
    expectBrokenAt(await verify(env, id), 7, /altered/);
  });

  it('a deleted entry in the middle, and a deleted first entry', async () => {
    const middle = await seededTenant(env);
    await env.tdb.owner`delete from audit_log where tenant_id = ${middle} and seq = 5`;
    expectBrokenAt(await verify(env, middle), 5, /missing/);

    const first = await seededTenant(env);
    await env.tdb.owner`delete from audit_log where tenant_id = ${first} and seq = 1`;
    expectBrokenAt(await verify(env, first), 1, /missing/);
  });

  it('reordered entries (two entries swap their places)', async () => {
    const id = await seededTenant(env);
    await env.tdb.owner.begin(async (tx) => {
      await tx`update audit_log set seq = 1000 where tenant_id = ${id} and seq = 4`;
      await tx`update audit_log set seq = 4 where tenant_id = ${id} and seq = 7`;
      await tx`update audit_log set seq = 7 where tenant_id = ${id} and seq = 1000`;
    });
    expectBrokenAt(await verify(env, id), 4);
  });

  it('a truncated tail with the chain head rewound to match: caught by the signed checkpoint', async () => {
    const id = await seededTenant(env, 12);
    await env.checkpointer.flush([id]);
    const kept = 8;
    const keptHash = await entryHashAt(env, id, kept);
    await env.tdb.owner.begin(async (tx) => {
      await tx`delete from audit_log where tenant_id = ${id} and seq > ${kept}`;
      await tx`update audit_heads set seq = ${kept}, hash = ${keptHash} where tenant_id = ${id}`;
    });
    // Without the checkpoint the shortened chain is self-consistent: the checkpoint is what catches it.
    expect(await verifyWithout(env, id)).toEqual({ ok: true, checked: kept });
    const result = await verify(env, id);
    expectBrokenAt(result, kept + 1, /signed checkpoint vouches for 12/);
    expect(result.checkpointSeq).toBe(12);
  });

  it('the whole chain and its head deleted: caught by the signed checkpoint', async () => {
    const id = await seededTenant(env, 4);
    await env.checkpointer.flush([id]);
    await env.tdb.owner`delete from audit_log where tenant_id = ${id}`;
    await env.tdb.owner`delete from audit_heads where tenant_id = ${id}`;
    expectBrokenAt(await verify(env, id), 1, /removed/);
  });

  it('a truncated tail with the chain head left as it was', async () => {
    const id = await seededTenant(env, 12);
    await env.tdb.owner`delete from audit_log where tenant_id = ${id} and seq > 9`;
    expectBrokenAt(await verify(env, id), 10, /chain head is at 12/);
  });

  it('a chain rewritten from some entry on no longer matches the checkpoint that covered it', async () => {
    const id = await seededTenant(env, 6);
    await env.store.write(id, 3, 'f'.repeat(64)); // a signed checkpoint of a different history
    expectBrokenAt(await verify(env, id), 3, /differs from its signed checkpoint/);
  });
});

describe('signed checkpoints', () => {
  it('the checkpointer writes a validly signed checkpoint of the committed head to a private file', async () => {
    const id = await seededTenant(env, 3);
    await env.checkpointer.flush([id]);
    await env.checkpointer.flush([id]); // nothing new: no second checkpoint
    const list = await env.store.list(id);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({
      valid: true,
      checkpoint: { tenantId: id, seq: 3, hash: await entryHashAt(env, id, 3) },
    });
    expect((await stat(env.store.file)).mode & 0o777).toBe(0o600);
  });

  it('lines with a bad signature, another key’s signature, an edited field or no JSON are ignored', async () => {
    const id = await seededTenant(env, 4);
    await env.checkpointer.flush([id]);
    const [real] = await env.store.list(id);
    const other = new CheckpointStore(env.dataDir, new MasterKey(randomBytes(32)));
    const forged: Checkpoint[] = [
      { ...real!.checkpoint, seq: 100, signature: randomBytes(64).toString('base64') },
      { ...real!.checkpoint, seq: 50 }, // the real signature over different content
      { ...real!.checkpoint, seq: 60, signature: 'not base64 at all!' },
    ];
    for (const cp of forged) await appendFile(env.store.file, JSON.stringify(cp) + '\n');
    await other.write(id, 70, 'a'.repeat(64)); // signed, by a key that is not ours
    await appendFile(env.store.file, '{ this is not json\n');

    const list = await env.store.list(id);
    expect(list.map((l) => [l.checkpoint.seq, l.valid])).toEqual([
      [4, true],
      [100, false],
      [50, false],
      [60, false],
      [70, false],
    ]);
    expect((await env.store.latest(id))?.seq).toBe(4);
    // The forged checkpoints would claim a truncated tail; ignored, the chain verifies.
    expect(await verify(env, id)).toEqual({ ok: true, checked: 4, checkpointSeq: 4 });
  });

  it('a signature does not carry over to another tenant', async () => {
    const a = await seededTenant(env, 2);
    const b = await newTenant(env);
    const cp = await env.store.write(a, 2, await entryHashAt(env, a, 2));
    expect(env.store.isValid({ ...cp, tenantId: b })).toBe(false);
    expect(env.store.isValid(cp)).toBe(true);
  });
});

describe('a chain longer than one verification batch (2,000 entries)', () => {
  const total = 2105;
  let id: string;

  beforeAll(async () => {
    id = await newTenant(env);
    await append(env, id, total, 500);
  });

  it('verifies every entry across the batch boundary', async () => {
    expect(await verify(env, id)).toEqual({ ok: true, checked: total });
  });

  it('names a changed entry past the boundary, and is intact again once it is restored', async () => {
    const [before] = await env.tdb.owner<{ details: unknown }[]>`
      select details from audit_log where tenant_id = ${id} and seq = 2003`;
    await env.tdb.owner`update audit_log set details = '{"n": 1}' where tenant_id = ${id} and seq = 2003`;
    expectBrokenAt(await verify(env, id), 2003, /altered/);
    await env.tdb.owner`update audit_log set details = ${env.tdb.owner.json(before!.details as never)}
                        where tenant_id = ${id} and seq = 2003`;
    expect(await verify(env, id)).toEqual({ ok: true, checked: total });
  });

  it('names the deleted first entry of the second batch', async () => {
    await env.tdb.owner`delete from audit_log where tenant_id = ${id} and seq = 2001`;
    expectBrokenAt(await verify(env, id), 2001, /missing/);
  });
});

describe('steward audit verify', () => {
  let cli: Env;
  let intact: string;
  let tampered: string;
  let truncated: string;

  const run = (): Promise<{
    code: number;
    out: { ok: boolean; tenants: (VerifyResult & { tenant: string })[] };
  }> =>
    new Promise((resolve, reject) => {
      const childEnv: NodeJS.ProcessEnv = {
        ...process.env,
        DATABASE_URL: cli.tdb.ownerUrl,
        STEWARD_DATA_DIR: cli.dataDir,
        STEWARD_MASTER_KEY: TEST_MASTER_KEY,
        LOG_LEVEL: 'silent',
      };
      delete childEnv.DATABASE_APP_URL;
      delete childEnv.TEST_DATABASE_URL;
      execFile(
        process.execPath,
        ['bin/steward.js', 'audit', 'verify', '--json'],
        { cwd: REPO_ROOT, env: childEnv, timeout: 60_000 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
          const last = stdout.trim().split('\n').at(-1) ?? '';
          try {
            resolve({ code, out: JSON.parse(last) });
          } catch {
            reject(new Error(`steward audit verify printed no JSON (exit ${code}): ${stdout}\n${stderr}`));
          }
        },
      );
    });

  const slugOf = async (id: string) => {
    const [row] = await cli.tdb.owner<{ slug: string }[]>`select slug from tenants where id = ${id}`;
    return row!.slug;
  };

  beforeAll(async () => {
    cli = await openEnv();
    intact = await seededTenant(cli, 6);
    tampered = await seededTenant(cli, 6);
    truncated = await seededTenant(cli, 6);
    await cli.checkpointer.flush([intact, tampered, truncated]);
  });
  afterAll(() => cli?.close());

  it('exits 0 on an intact log, listing every tenant and the platform chain', async () => {
    const { code, out } = await run();
    expect(code).toBe(0);
    expect(out.ok).toBe(true);
    const slugs = out.tenants.map((t) => t.tenant);
    expect(slugs).toEqual(
      expect.arrayContaining(['_platform', await slugOf(intact), await slugOf(tampered)]),
    );
    for (const t of out.tenants) expect(t.ok).toBe(true);
  });

  it('exits 1 after tampering, naming the first broken entry of each broken tenant', async () => {
    await cli.tdb.owner`delete from audit_log where tenant_id = ${tampered} and seq = 3`;
    const kept = 2;
    const keptHash = await entryHashAt(cli, truncated, kept);
    await cli.tdb.owner`delete from audit_log where tenant_id = ${truncated} and seq > ${kept}`;
    await cli.tdb
      .owner`update audit_heads set seq = ${kept}, hash = ${keptHash} where tenant_id = ${truncated}`;

    const { code, out } = await run();
    expect(code).toBe(1);
    expect(out.ok).toBe(false);
    const bySlug = new Map(out.tenants.map((t) => [t.tenant, t]));
    expect(bySlug.get(await slugOf(tampered))).toMatchObject({ ok: false, firstBrokenSeq: 3 });
    // Only the checkpoint in STEWARD_DATA_DIR reveals this one.
    expect(bySlug.get(await slugOf(truncated))).toMatchObject({
      ok: false,
      firstBrokenSeq: 3,
      checkpointSeq: 6,
    });
    expect(bySlug.get(await slugOf(intact))).toMatchObject({ ok: true, checked: 6 });
  });
});
