const SECRET_FIELDS = [
  'password',
  'newPassword',
  'refreshToken',
  'accessToken',
  'token',
  'key',
  'secret',
  'clientKey',
  'clientSecret',
];
// MFA: the current password, the sign-in's second-step token, backup codes, the TOTP enrolment URI.
// (Not `code`: that would hide every error code; request bodies are not logged anyway.)
SECRET_FIELDS.push('currentPassword', 'mfaToken', 'backupCodes', 'otpauthUri');

/** Headers and body fields that must never reach a log (`*.x` does not match a top-level `x`). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  // Web dashboard: a push subscription's auth secret, a stream ticket (single-use, 60 s; a ticket in
  // a logged URL is already spent).
  'keys.auth',
  '*.keys.auth',
  'ticket',
  '*.ticket',
];
