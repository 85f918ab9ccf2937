/**
 * The dashboard's one way to build HTML: the `html` template tag escapes every interpolated value
 * (subjects, event fields, error text are untrusted input) unless it is already {@link SafeHtml}
 * built by this tag. Arrays are joined, `null`/`undefined`/`false` render as nothing.
 */

/** HTML built by {@link html}: safe to interpolate as is. */
export class SafeHtml {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }
}

/** Text with `& < > " '` replaced by entities: safe in element content and quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

type Interpolation = SafeHtml | string | number | boolean | null | undefined | Date | Interpolation[];

function render(value: Interpolation): string {
  if (value instanceof SafeHtml) return value.text;
  if (value === null || value === undefined || value === false) return '';
  if (Array.isArray(value)) return value.map(render).join('');
  if (value instanceof Date) return escapeHtml(value.toISOString());
  return escapeHtml(String(value));
}

/** Template tag: the literal parts are trusted markup, every `${value}` is escaped. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0] ?? '';
  for (const [index, value] of values.entries()) out += render(value) + (strings[index + 1] ?? '');
  return new SafeHtml(out);
}
