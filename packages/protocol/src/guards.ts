/**
 * Hand-written validation helpers for messages that cross the channel. Every `parseX(input: unknown)`
 * in this package is built from these: objects must not carry unknown keys, and a failure names the
 * offending field by its path so both sides log the same message.
 */

/** A message that does not match its schema. `path` is like `plan.network.address`. */
export class MessageValidationError extends Error {
  readonly code = 'BAD_MESSAGE';
  readonly path: string;

  constructor(path: string, expectation: string) {
    super(`${path} ${expectation}`);
    this.name = 'MessageValidationError';
    this.path = path;
  }
}

export type Fields = Readonly<Record<string, unknown>>;

/** A plain object whose keys are all in `known`; returns it for field access. */
export function expectObject(value: unknown, path: string, known: readonly string[]): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MessageValidationError(path, 'must be an object');
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw new MessageValidationError(`${path}.${key}`, 'is not a known field');
  }
  return value as Fields;
}

export function expectString(value: unknown, path: string, options: { nonEmpty?: boolean } = {}): string {
  if (typeof value !== 'string') throw new MessageValidationError(path, 'must be a string');
  if (options.nonEmpty === true && value.length === 0) throw new MessageValidationError(path, 'must not be empty');
  return value;
}

export function expectNullableString(value: unknown, path: string): string | null {
  return value === null ? null : expectString(value, path);
}

export function expectBoolean(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') throw new MessageValidationError(path, 'must be a boolean');
  return value;
}

export function expectInteger(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MessageValidationError(path, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

export function expectNullableInteger(value: unknown, path: string, min: number, max: number): number | null {
  return value === null ? null : expectInteger(value, path, min, max);
}

export function expectStringArray(value: unknown, path: string): readonly string[] {
  if (!Array.isArray(value)) throw new MessageValidationError(path, 'must be an array of strings');
  return value.map((item, index) => expectString(item, `${path}[${index}]`));
}

export function expectArray<T>(
  value: unknown,
  path: string,
  parseItem: (item: unknown, path: string) => T,
): readonly T[] {
  if (!Array.isArray(value)) throw new MessageValidationError(path, 'must be an array');
  return value.map((item, index) => parseItem(item, `${path}[${index}]`));
}

export function expectOneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new MessageValidationError(path, `must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

/** A map of string to string (environment variables). */
export function expectStringRecord(value: unknown, path: string): Readonly<Record<string, string>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MessageValidationError(path, 'must be an object of strings');
  }
  const result: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) result[key] = expectString(item, `${path}.${key}`);
  return result;
}
