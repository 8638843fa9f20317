import { describe, expect, it } from "vitest";
import { parseDotEnv, toDotEnv } from "./env";

describe("parseDotEnv", () => {
  it("reads names and values, skipping comments, blanks, export and quotes", () => {
    const text = '# db\nDATABASE_URL=postgres://x\n\nexport GREETING="hello world"\nEMPTY=\nSINGLE=\'a=b\'';
    expect(parseDotEnv(text)).toEqual({
      vars: { DATABASE_URL: "postgres://x", GREETING: "hello world", EMPTY: "", SINGLE: "a=b" },
      errors: [],
    });
  });

  it("names the line of every mistake", () => {
    const { errors } = parseDotEnv("OK=1\nlower=2\nnoequals\n=3");
    expect(errors).toEqual([
      "line 2: lower is not a valid name (A-Z, 0-9 and _, starting with a letter)",
      "line 3: expected NAME=value",
      "line 4: expected NAME=value",
    ]);
  });

  it("writes back what it reads", () => {
    const vars = { A: "1", B_2: "x=y" };
    expect(parseDotEnv(toDotEnv(vars)).vars).toEqual(vars);
  });
});
