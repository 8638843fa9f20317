// `.env` text ⇄ variables.

/** Parses `.env` text: `NAME=value` lines; blank lines and `#` comments skipped; `export `
 * prefixes and matching quotes around values removed. Errors name the line. */
export function parseDotEnv(text: string): { vars: Record<string, string>; errors: string[] } {
  const vars: Record<string, string> = {};
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const body = line.startsWith("export ") ? line.slice(7).trim() : line;
    const eq = body.indexOf("=");
    if (eq <= 0) {
      errors.push(`line ${index + 1}: expected NAME=value`);
      return;
    }
    const name = body.slice(0, eq).trim();
    let value = body.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0] as string)) {
      value = value.slice(1, -1);
    }
    if (!/^[A-Z][A-Z0-9_]{0,63}$/.test(name)) {
      errors.push(`line ${index + 1}: ${name} is not a valid name (A-Z, 0-9 and _, starting with a letter)`);
      return;
    }
    vars[name] = value;
  });
  return { vars, errors };
}

export function toDotEnv(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
}
