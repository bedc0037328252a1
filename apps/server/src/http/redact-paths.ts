const SECRET_FIELDS = ['password', 'newPassword', 'refreshToken', 'accessToken', 'token', 'key', 'secret'];

/** Headers and body fields that must never reach a log (`*.x` does not match a top-level `x`). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
];
