import { useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../api/api-client.ts';
import { formFromSettings, settingsFromForm, type SettingsForm } from '../state/tenant-settings-form.ts';
import { useDashboard } from './dashboard-context.ts';

const errorText = (e: unknown) =>
  e instanceof ApiError && e.status === 403
    ? 'You do not have the permission for this.'
    : (e as Error).message;

/** The tenant's name, approval policy and session/MFA policy (PATCH /tenant). */
export function TenantSettings() {
  const { api } = useDashboard();
  const [name, setName] = useState('');
  const [form, setForm] = useState<SettingsForm | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [message, setMessage] = useState<string | undefined>();

  useEffect(() => {
    api.request<{ name: string; settings: Record<string, unknown> }>('GET', '/tenant').then(
      (t) => {
        setName(t.name);
        setForm(formFromSettings(t.settings ?? {}));
      },
      (e: unknown) => setError(errorText(e)),
    );
  }, [api]);

  if (error) {
    return (
      <section aria-labelledby="settings-title" className="card">
        <h2 id="settings-title">Organisation settings</h2>
        <p className="error">{error}</p>
      </section>
    );
  }
  if (!form) return null;
  const set = <K extends keyof SettingsForm>(k: K, v: SettingsForm[K]) => setForm({ ...form, [k]: v });

  async function save(e: FormEvent) {
    e.preventDefault();
    setMessage(undefined);
    const r = settingsFromForm(form!);
    if ('problem' in r) return setMessage(r.problem);
    try {
      const t = await api.request<{ settings: Record<string, unknown> }>('PATCH', '/tenant', {
        name,
        settings: r.settings,
      });
      setForm(formFromSettings(t.settings));
      setMessage('Settings saved.');
    } catch (err) {
      setMessage(errorText(err));
    }
  }

  const num = (k: keyof SettingsForm, label: string, placeholder = '') => (
    <label>
      {label}
      <input
        inputMode="numeric"
        placeholder={placeholder}
        value={form[k] as string}
        onChange={(e) => set(k, e.target.value as never)}
      />
    </label>
  );

  return (
    <section aria-labelledby="settings-title" className="card">
      <h2 id="settings-title">Organisation settings</h2>
      <form className="settings-form" onSubmit={save}>
        <label>
          Organisation name
          <input required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <fieldset>
          <legend>Approval policy</legend>
          <label>
            Ask for approval from risk
            <select
              value={form.approveFromRisk}
              onChange={(e) => set('approveFromRisk', e.target.value as SettingsForm['approveFromRisk'])}
            >
              {['low', 'medium', 'high', 'critical'].map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          </label>
          {num('amountThreshold', 'Amount threshold', 'none')}
          <label className="check">
            <input
              type="checkbox"
              checked={form.newRecipients}
              onChange={(e) => set('newRecipients', e.target.checked)}
            />{' '}
            New recipients need approval
          </label>
          <label>
            Tools never run without approval (comma-separated)
            <input value={form.neverAutomatic} onChange={(e) => set('neverAutomatic', e.target.value)} />
          </label>
          <label>
            Otherwise
            <select
              value={form.default}
              onChange={(e) => set('default', e.target.value as SettingsForm['default'])}
            >
              <option value="auto">run automatically</option>
              <option value="approve">ask for approval</option>
            </select>
          </label>
          {num('quorum', 'Approvals needed (quorum)')}
          <label className="check">
            <input
              type="checkbox"
              checked={form.forbidSelfApproval}
              onChange={(e) => set('forbidSelfApproval', e.target.checked)}
            />{' '}
            Nobody approves their own request
          </label>
          {num('expiresInMinutes', 'Approvals expire after (minutes)')}
          <label>
            Approve
            <select
              value={form.approvalMode}
              onChange={(e) => set('approvalMode', e.target.value as SettingsForm['approvalMode'])}
            >
              <option value="step">each step</option>
              <option value="plan">the whole plan at once</option>
            </select>
          </label>
        </fieldset>
        <fieldset>
          <legend>Sign-in and sessions</legend>
          <label>
            Two-factor authentication required
            <select value={form.mfa} onChange={(e) => set('mfa', e.target.value as SettingsForm['mfa'])}>
              <option value="none">for nobody</option>
              <option value="all">for everyone</option>
              <option value="roles">for some roles</option>
            </select>
          </label>
          {form.mfa === 'roles' && (
            <label>
              Roles that need two-factor authentication
              <input value={form.mfaRoles} onChange={(e) => set('mfaRoles', e.target.value)} />
            </label>
          )}
          {num('sessionIdleMinutes', 'Idle timeout (minutes)', 'default')}
          {num('sessionAbsoluteHours', 'Session lifetime (hours)', 'default')}
          {num('maxSessionsPerUser', 'Sessions per user', 'default')}
        </fieldset>
        <button type="submit" className="primary">
          Save settings
        </button>
        {message && <p role="status">{message}</p>}
      </form>
    </section>
  );
}
