import { describe, expect, it } from 'vitest';
import { parseInstallationDestinations, siemConfigProblems } from './siem-destination.ts';

describe('SIEM destination settings', () => {
  it('parses STEWARD_SIEM_DESTINATIONS and names every problem', () => {
    const ok = parseInstallationDestinations(
      JSON.stringify([
        { name: 'soc', kind: 'syslog', config: { host: 'siem.example.com', port: 6514, tls: true } },
        { name: 'lake', kind: 'https', config: { url: 'https://ingest.example.com/v1' }, token: 't' },
      ]),
    );
    expect(ok.problems).toEqual([]);
    expect(ok.destinations.map((d) => d.name)).toEqual(['soc', 'lake']);
    expect(parseInstallationDestinations('{').problems[0]).toContain('JSON array');
    expect(
      parseInstallationDestinations(JSON.stringify([{ name: 'x', kind: 'syslog', config: { host: 'h' } }]))
        .problems[0],
    ).toContain('STEWARD_SIEM_DESTINATIONS');
    const twice = parseInstallationDestinations(
      JSON.stringify([
        { name: 'a', kind: 'syslog', config: { host: 'h', port: 514 } },
        { name: 'a', kind: 'syslog', config: { host: 'h', port: 515 } },
      ]),
    );
    expect(twice.problems.join()).toContain('used twice');
  });

  it('accepts only https:// without credentials for HTTPS destinations', () => {
    expect(siemConfigProblems('https', { url: 'http://plain.example.com' })[0]).toContain('body/config/url');
    expect(siemConfigProblems('https', { url: 'https://u:p@x.example.com' })[0]).toContain('user name');
    expect(siemConfigProblems('syslog', { host: 'h', port: 70000 })[0]).toContain('body/config/port');
    expect(siemConfigProblems('https', { url: 'https://x.example.com', extra: 1 })).not.toEqual([]);
  });
});
