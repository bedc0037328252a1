import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.steward/**',
      'dist/**',
      'apps/web/dist/**',
      'apps/server/dist/**',
      'coverage/**',
      'bench/out/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'read configuration in config.ts only',
        },
      ],
    },
  },
  {
    files: [
      'apps/server/src/config.ts',
      'apps/server/src/cli.ts',
      '**/*.test.ts',
      '**/testing/**',
      'bench/**',
      'apps/web/build/**',
      'packages/db/src/embedded-postgres.ts',
      'bin/steward.js',
    ],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // The dashboard's service worker (plain JS, run by the browser).
    files: ['apps/web/src/sw/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: { self: 'readonly', caches: 'readonly', fetch: 'readonly', Response: 'readonly' },
    },
  },
);
