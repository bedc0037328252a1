import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const DOVECOT = '/usr/sbin/dovecot';

/** Why the IMAP tests cannot run here, or undefined when they can. */
export function dovecotMissing(): string | undefined {
  return existsSync(DOVECOT)
    ? undefined
    : 'Dovecot is not installed: apt-get install dovecot-imapd (.ci/run installs it)';
}

export interface Dovecot {
  host: string;
  port: number;
  user: string;
  password: string;
  stop(): Promise<void>;
  /** Stop and start the server on the same port (clients see a disconnect). */
  restart(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function uidOf(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith(name + ':'));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A real Dovecot IMAP server in a temporary directory, with one user, on a random port. */
export async function startDovecot(): Promise<Dovecot> {
  const dir = await mkdtemp(path.join(tmpdir(), 'steward-dovecot-'));
  await chmod(dir, 0o755);
  for (const d of ['run', 'state', 'mail']) await mkdir(path.join(dir, d));
  const port = await freePort();
  const user = 'inbox@test.local';
  const password = 'imap-test-password';
  const root = process.getuid?.() === 0;
  const me = userInfo().username;
  const mailOwner = root ? 'nobody' : me;
  const mailIds = (await uidOf(mailOwner)) ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  if (root) await chown(path.join(dir, 'mail'), mailIds.uid, mailIds.gid);
  const conf = path.join(dir, 'dovecot.conf');
  await writeFile(path.join(dir, 'users'), `${user}:{PLAIN}${password}\n`);
  await writeFile(
    conf,
    `protocols = imap
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:${dir}/mail/%u
first_valid_uid = 1
default_login_user = ${root ? 'dovenull' : me}
default_internal_user = ${root ? 'dovecot' : me}
passdb {
  driver = passwd-file
  args = scheme=PLAIN ${dir}/users
}
userdb {
  driver = static
  args = uid=${mailIds.uid} gid=${mailIds.gid} home=${dir}/mail/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
`,
  );
  const start = async () => {
    // Dovecot daemonizes; its children must not hold our pipes open.
    await new Promise<void>((resolve, reject) => {
      const child = spawn(DOVECOT, ['-c', conf], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`dovecot exited with ${code}`)),
      );
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(true));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
      });
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(
          `dovecot did not listen: ${await readFile(`${dir}/dovecot.log`, 'utf8').catch(() => '')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    await run('/usr/bin/doveadm', ['-c', conf, 'stop']).catch(() => {});
    const deadline = Date.now() + 10_000;
    while (existsSync(`${dir}/run/master.pid`) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
  };
  await start();
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    async stop() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      await stop();
      await start();
    },
  };
}
