import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, ENVIRONMENT, loadConfig } from './config.ts';

/** The problems loadConfig reports for an environment (it must throw). */
function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected loadConfig to reject ' + JSON.stringify(env));
}

const KEY = 'b'.repeat(64);

describe('loadConfig', () => {
  it('has a working default for everything', () => {
    expect(loadConfig({})).toMatchObject({
      port: 8080,
      host: 'localhost',
      databaseUrl: undefined,
      databaseAppUrl: undefined,
      dbPoolMax: 10,
      embeddedPgPort: 0,
      dataDir: path.resolve('.steward'),
      redisUrl: undefined,
      baseUrl: 'http://localhost:8080',
      noDemo: false,
      demoPassword: undefined,
      logLevel: 'info',
      masterKey: undefined,
      bodyLimit: 1_048_576,
      accessTokenTtl: 900,
      trustProxy: false,
      llm: {
        provider: 'rules',
        anthropicApiKey: undefined,
        openaiApiKey: undefined,
        openaiBaseUrl: undefined,
        model: undefined,
      },
    });
  });

  it('reads every variable', () => {
    const c = loadConfig({
      PORT: '9090',
      HOST: '0.0.0.0',
      DATABASE_URL: 'postgres://owner:pw@db:5432/steward',
      DATABASE_APP_URL: 'postgresql://app:pw@db:5432/steward',
      STEWARD_DB_POOL_MAX: '20',
      STEWARD_PG_PORT: '5544',
      STEWARD_DATA_DIR: '/var/lib/steward',
      REDIS_URL: 'rediss://cache:6380',
      STEWARD_BASE_URL: 'https://steward.example.com/',
      STEWARD_NO_DEMO: '1',
      STEWARD_DEMO_PASSWORD: 'long enough password',
      LOG_LEVEL: 'debug',
      STEWARD_MASTER_KEY: KEY,
      STEWARD_BODY_LIMIT: '2048',
      STEWARD_ACCESS_TOKEN_TTL: '60',
      STEWARD_TRUST_PROXY: 'true',
      STEWARD_LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: 'http://localhost:11434/v1',
      STEWARD_LLM_MODEL: 'llama3',
    });
    expect(c).toMatchObject({
      port: 9090,
      host: '0.0.0.0',
      databaseUrl: 'postgres://owner:pw@db:5432/steward',
      databaseAppUrl: 'postgresql://app:pw@db:5432/steward',
      dbPoolMax: 20,
      embeddedPgPort: 5544,
      dataDir: '/var/lib/steward',
      redisUrl: 'rediss://cache:6380',
      baseUrl: 'https://steward.example.com',
      noDemo: true,
      demoPassword: 'long enough password',
      logLevel: 'debug',
      masterKey: KEY,
      bodyLimit: 2048,
      accessTokenTtl: 60,
      trustProxy: 1,
      llm: { provider: 'openai', openaiBaseUrl: 'http://localhost:11434/v1', model: 'llama3' },
    });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '', STEWARD_MASTER_KEY: '' })).toMatchObject({
      port: 8080,
      databaseUrl: undefined,
      masterKey: undefined,
    });
  });

  it('command-line overrides win over the environment', () => {
    const c = loadConfig({ PORT: '9090', STEWARD_DATA_DIR: '/a' }, { port: 7070, dataDir: '/b' });
    expect(c).toMatchObject({ port: 7070, dataDir: '/b', baseUrl: 'http://localhost:7070' });
  });

  it('lists every problem at once', () => {
    const found = problems({
      PORT: 'eighty',
      DATABASE_URL: 'mysql://db/steward',
      REDIS_URL: 'not a url',
      STEWARD_MASTER_KEY: 'short',
      STEWARD_LLM_PROVIDER: 'anthropic',
      LOG_LEVEL: 'loud',
      STEWARD_NO_DEMO: 'maybe',
      STEWARD_DEMO_PASSWORD: 'short',
    });
    expect([...found].sort()).toEqual(
      [
        'PORT must be an integer from 0 to 65535 (got "eighty")',
        'DATABASE_URL must be a postgres or postgresql URL',
        'STEWARD_DEMO_PASSWORD must be at least 10 characters',
        'STEWARD_MASTER_KEY must be 32 bytes written as 64 hex characters or base64',
        'STEWARD_LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY',
        'REDIS_URL is not a valid URL',
        'STEWARD_NO_DEMO must be 1 or 0 (got "maybe")',
        'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      ].sort(),
    );
  });

  it('the error message names every problem, one per line', () => {
    try {
      loadConfig({ PORT: '-1', STEWARD_DB_POOL_MAX: '0' });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toBe(
        'invalid configuration:\n' +
          '  - PORT must be an integer from 0 to 65535 (got "-1")\n' +
          '  - STEWARD_DB_POOL_MAX must be an integer from 1 to 500 (got "0")',
      );
    }
  });

  it('rejects a bad PORT', () => {
    for (const port of ['65536', '-1', '80.5', 'http', '1e9']) {
      expect(problems({ PORT: port }), port).toEqual([
        `PORT must be an integer from 0 to 65535 (got "${port}")`,
      ]);
    }
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
  });

  it('rejects a URL that does not parse or has the wrong scheme', () => {
    expect(problems({ DATABASE_URL: 'localhost:5432' })).toEqual([
      'DATABASE_URL must be a postgres or postgresql URL',
    ]);
    expect(problems({ DATABASE_URL: '://nope' })).toEqual(['DATABASE_URL is not a valid URL']);
    expect(problems({ STEWARD_BASE_URL: 'ftp://steward.example.com' })).toEqual([
      'STEWARD_BASE_URL must be a http or https URL',
    ]);
    expect(problems({ REDIS_URL: 'http://cache' })).toEqual(['REDIS_URL must be a redis or rediss URL']);
    expect(problems({ STEWARD_LLM_PROVIDER: 'openai', OPENAI_BASE_URL: 'nope' })).toEqual([
      'OPENAI_BASE_URL is not a valid URL',
    ]);
  });

  it('refuses DATABASE_APP_URL without DATABASE_URL (the owner connection that migrates)', () => {
    expect(problems({ DATABASE_APP_URL: 'postgres://app:pw@db/steward' })).toEqual([
      'DATABASE_APP_URL needs DATABASE_URL (the owner connection) too',
    ]);
  });

  it('refuses an LLM provider without its key', () => {
    expect(problems({ STEWARD_LLM_PROVIDER: 'anthropic' })).toEqual([
      'STEWARD_LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY',
    ]);
    expect(problems({ STEWARD_LLM_PROVIDER: 'openai' })).toEqual([
      'STEWARD_LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL',
    ]);
    expect(problems({ STEWARD_LLM_PROVIDER: 'gemini' })).toEqual([
      'STEWARD_LLM_PROVIDER must be one of rules, anthropic, openai (got "gemini")',
    ]);
    expect(
      loadConfig({ STEWARD_LLM_PROVIDER: 'anthropic', ANTHROPIC_API_KEY: 'sk-ant-x' }).llm,
    ).toMatchObject({
      provider: 'anthropic',
      anthropicApiKey: 'sk-ant-x',
    });
    expect(loadConfig({ STEWARD_LLM_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-x' }).llm.openaiApiKey).toBe(
      'sk-x',
    );
  });

  it('accepts a master key in hex or base64', () => {
    expect(loadConfig({ STEWARD_MASTER_KEY: KEY }).masterKey).toBe(KEY);
    const b64 = Buffer.alloc(32, 7).toString('base64');
    expect(loadConfig({ STEWARD_MASTER_KEY: b64 }).masterKey).toBe(b64);
  });

  it('checks the bounds of the numeric settings', () => {
    expect(problems({ STEWARD_BODY_LIMIT: '10' })).toEqual([
      'STEWARD_BODY_LIMIT must be an integer from 1024 to 104857600 (got "10")',
    ]);
    expect(problems({ STEWARD_ACCESS_TOKEN_TTL: '86401' })).toEqual([
      'STEWARD_ACCESS_TOKEN_TTL must be an integer from 30 to 86400 (got "86401")',
    ]);
    expect(problems({ STEWARD_PG_PORT: '70000' })).toEqual([
      'STEWARD_PG_PORT must be an integer from 0 to 65535 (got "70000")',
    ]);
  });

  it('documents every variable it reads', async () => {
    const { readFile } = await import('node:fs/promises');
    const source = await readFile(new URL('./config.ts', import.meta.url), 'utf8');
    const read = new Set(
      [...source.matchAll(/\b(?:str|int|bool|url|oneOf)\(\s*'([A-Z0-9_]+)'/g)].map((m) => m[1]!),
    );
    expect(read.size).toBeGreaterThan(15);
    expect([...read].filter((name) => !(name in ENVIRONMENT))).toEqual([]);
    expect(Object.keys(ENVIRONMENT).filter((name) => !read.has(name))).toEqual([]);
  });

  it('reads STEWARD_TRUST_PROXY as off, a hop count or proxy addresses', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ STEWARD_TRUST_PROXY: '0' }).trustProxy).toBe(false);
    expect(loadConfig({ STEWARD_TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ STEWARD_TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ STEWARD_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,loopback,::1' }).trustProxy).toEqual([
      '10.0.0.0/8',
      '127.0.0.1',
      'loopback',
      '::1',
    ]);
    expect(problems({ STEWARD_TRUST_PROXY: '10.0.0.0/40' })[0]).toContain('STEWARD_TRUST_PROXY');
    expect(problems({ STEWARD_TRUST_PROXY: 'everyone' })[0]).toContain('STEWARD_TRUST_PROXY');
  });

  it('reads the rate limits and checks the TLS files', () => {
    expect(loadConfig({}).rateLimits).toEqual({
      loginFailuresPerAccount: 20,
      loginFailuresPerIp: 100,
      ipRequestsPerMinute: 0,
      tenantRequestsPerMinute: 0,
      apiKeyRequestsPerMinute: 0,
    });
    expect(loadConfig({ STEWARD_RATE_LIMIT_TENANT: '600' }).rateLimits.tenantRequestsPerMinute).toBe(600);
    expect(problems({ STEWARD_TLS_CERT: '/nonexistent/cert.pem' })).toEqual([
      'STEWARD_TLS_CERT and STEWARD_TLS_KEY go together: set both or neither',
      'STEWARD_TLS_CERT: cannot read /nonexistent/cert.pem',
    ]);
    const c = loadConfig({ STEWARD_TLS_CERT: 'package.json', STEWARD_TLS_KEY: 'package.json', PORT: '8443' });
    expect(c.tls).toEqual({ certFile: path.resolve('package.json'), keyFile: path.resolve('package.json') });
    expect(c.baseUrl).toBe('https://localhost:8443');
  });

  it('validates the key provider settings once (STEWARD_KMS_*)', () => {
    expect(loadConfig({}).keys).toEqual({ provider: 'local' });
    expect(problems({ STEWARD_KMS_PROVIDER: 'hsm' })).toEqual([
      'STEWARD_KMS_PROVIDER must be one of local, vault, aws-kms, pkcs11 (got "hsm")',
    ]);
    expect(problems({ STEWARD_KMS_PROVIDER: 'vault' })).toEqual([
      'STEWARD_KMS_PROVIDER=vault needs STEWARD_KMS_VAULT_ADDR',
      'STEWARD_KMS_PROVIDER=vault needs STEWARD_KMS_VAULT_TOKEN',
    ]);
    expect(
      loadConfig({
        STEWARD_KMS_PROVIDER: 'vault',
        STEWARD_KMS_VAULT_ADDR: 'https://vault.example:8200',
        STEWARD_KMS_VAULT_TOKEN: 'hvs.x',
        STEWARD_KMS_VAULT_MOUNT: '/team/transit/',
      }).keys,
    ).toEqual({
      provider: 'vault',
      vault: {
        address: 'https://vault.example:8200',
        token: 'hvs.x',
        keyName: 'steward',
        mount: 'team/transit',
        namespace: undefined,
      },
    });
    expect(problems({ STEWARD_KMS_PROVIDER: 'aws-kms', STEWARD_KMS_AWS_REGION: 'Not A Region' })).toEqual([
      'STEWARD_KMS_PROVIDER=aws-kms needs STEWARD_KMS_AWS_KEY_ID',
      'STEWARD_KMS_AWS_REGION is not a region name',
    ]);
    expect(
      problems({
        STEWARD_KMS_PROVIDER: 'pkcs11',
        STEWARD_KMS_PKCS11_LIBRARY: 'libsofthsm2.so',
        STEWARD_KMS_PKCS11_TOKEN: 'steward',
      }),
    ).toEqual([
      'STEWARD_KMS_PKCS11_LIBRARY must be an absolute path',
      'STEWARD_KMS_PROVIDER=pkcs11 needs STEWARD_KMS_PKCS11_PIN',
    ]);
  });
});
