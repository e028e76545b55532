/** An error that stops start-up; the CLI prints its message as one line and exits 1. */
export class LeveeStartupError extends Error {
  override name = 'LeveeStartupError';
}
