import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.levee/', 'bench/results/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  // Dependencies point inward: services and adapters never import the HTTP layer or the roles.
  {
    files: ['src/auth/**', 'src/data/**', 'src/db/**', 'src/lib/**', 'src/config/**', 'src/observability/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/http/**', '**/roles/**', '**/cli/**', 'fastify', '@fastify/*'], message: 'Services and adapters must not depend on the HTTP layer, the roles or the CLI.' }] }],
    },
  },
  {
    files: ['src/roles/worker.ts', 'src/roles/push.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['fastify', '@fastify/*', '**/http/**'], message: 'The worker and push roles never load Fastify.' }] }],
    },
  },
);
