// The typed API client: paths and schemas generated from the control plane's OpenAPI document
// (`npm run api-types`; a test fails when they drift). Errors become `ApiError`s carrying the
// server's stable code and its message, which the pages show as they are.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type App = Schemas["App"];
export type Deployment = Schemas["Deployment"];
export type Domain = Schemas["Domain"];
export type Me = Schemas["Me"];

export const api = createClient<paths>({ baseUrl: "", credentials: "same-origin" });

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** For `invalid_input`, the field the message is about (`name: give the app a name…`). */
  get field(): string | undefined {
    if (this.code !== "invalid_input") return undefined;
    const at = this.message.indexOf(": ");
    return at > 0 ? this.message.slice(0, at) : undefined;
  }

  /** The message without its field prefix. */
  get detail(): string {
    const field = this.field;
    return field ? this.message.slice(field.length + 2) : this.message;
  }
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The answer's data, or an `ApiError` with the server's code and message. */
export async function call<T>(request: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await request;
  } catch {
    throw new ApiError(0, "network", "The control plane cannot be reached; check your connection and try again.");
  }
  const { data, error, response } = result;
  if (response.ok) return data as T;
  const body = (error ?? {}) as { code?: unknown; message?: unknown };
  throw new ApiError(
    response.status,
    typeof body.code === "string" ? body.code : `http_${response.status}`,
    typeof body.message === "string" ? body.message : `${response.status} ${response.statusText}`,
  );
}
