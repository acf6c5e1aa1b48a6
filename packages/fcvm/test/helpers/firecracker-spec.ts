/**
 * Firecracker's published API spec (shared/firecracker/firecracker.yaml, beside the repository)
 * compiled into strict validators: Firecracker's parser rejects unknown fields although the
 * Swagger file never says so, so `additionalProperties: false` is added to every object schema.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';

/** The spec sits in shared/ beside the repository: walk up from here until it is found. */
function findSpec(): string | undefined {
  if (process.env.FCVM_FIRECRACKER_SPEC) return process.env.FCVM_FIRECRACKER_SPEC;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'shared', 'firecracker', 'firecracker.yaml');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Swagger 2.0 definitions -> JSON Schema that Ajv compiles strictly: `additionalProperties: false`
 * on every object that does not say otherwise, `$ref` without siblings, the MMDS address regex
 * (written as a `format`) turned into a `pattern`, integer formats and `example` dropped.
 */
function toStrictSchema(node: Json): Json {
  if (Array.isArray(node)) return node.map(toStrictSchema);
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string') return { $ref: node.$ref };
  const out: { [key: string]: Json } = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'example') continue;
    if (key === 'format') {
      if (typeof value === 'string' && value.includes('169.254')) out.pattern = `^${value}$`;
      continue;
    }
    out[key] = key === 'properties' ? mapValues(value, toStrictSchema) : toStrictSchema(value);
  }
  const isObject = out.type === 'object' || out.properties !== undefined;
  if (isObject && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function mapValues(value: Json, fn: (v: Json) => Json): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fn(v)]));
}

export const specPath = findSpec();
export const specSkipReason = specPath
  ? false
  : 'shared/firecracker/firecracker.yaml not found beside the repository (set FCVM_FIRECRACKER_SPEC)';

export function loadSpecValidators(): (definition: string) => ValidateFunction {
  const spec = parseYaml(readFileSync(specPath!, 'utf8')) as { definitions: Json };
  const definitions = mapValues(spec.definitions, toStrictSchema);
  const ajv = new Ajv({ strict: true, allErrors: true });
  ajv.addSchema({ $id: 'fc', definitions }, 'fc');
  const cache = new Map<string, ValidateFunction>();
  return (definition) => {
    let validate = cache.get(definition);
    if (!validate) {
      validate = ajv.compile({ $ref: `fc#/definitions/${definition}` });
      cache.set(definition, validate);
    }
    return validate;
  };
}
