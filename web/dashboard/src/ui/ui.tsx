// Small accessible building blocks of our own (no UI kit).
import { type ReactNode, useId, useState } from "react";
import { ApiError } from "../api/client";

export function Button(props: {
  children: ReactNode;
  onClick?: () => void;
  type?: "button" | "submit";
  kind?: "primary" | "danger" | "plain";
  busy?: boolean;
  disabled?: boolean;
  label?: string;
}) {
  const { kind = "plain", busy = false } = props;
  return (
    <button
      type={props.type ?? "button"}
      className={`btn btn-${kind}`}
      onClick={props.onClick}
      disabled={props.disabled || busy}
      aria-busy={busy}
      aria-label={props.label}
    >
      {busy ? <span className="spinner" aria-hidden="true" /> : null}
      {props.children}
    </button>
  );
}

export function Field(props: {
  label: string;
  name: string;
  value: string;
  onChange: (value: string) => void;
  error?: string | undefined;
  hint?: string;
  type?: string;
  required?: boolean;
  placeholder?: string;
  multiline?: boolean;
  autoComplete?: string;
}) {
  const id = useId();
  const described = props.error ? `${id}-error` : props.hint ? `${id}-hint` : undefined;
  const common = {
    id,
    name: props.name,
    value: props.value,
    required: props.required,
    placeholder: props.placeholder,
    "aria-invalid": props.error ? true : undefined,
    "aria-describedby": described,
  };
  return (
    <div className={`field${props.error ? " field-invalid" : ""}`}>
      <label htmlFor={id}>{props.label}</label>
      {props.multiline ? (
        <textarea {...common} rows={6} spellCheck={false} onChange={(e) => props.onChange(e.target.value)} />
      ) : (
        <input
          {...common}
          type={props.type ?? "text"}
          autoComplete={props.autoComplete}
          onChange={(e) => props.onChange(e.target.value)}
        />
      )}
      {props.error ? (
        <p className="field-error" id={`${id}-error`} role="alert">
          {props.error}
        </p>
      ) : props.hint ? (
        <p className="field-hint" id={`${id}-hint`}>
          {props.hint}
        </p>
      ) : null}
    </div>
  );
}

/** An error from the API (or anything else), with its message as the server wrote it. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : undefined;
  return (
    <div className="note note-error" role="alert">
      <strong>{code === "rate_limited" ? "Slow down" : "That did not work"}</strong> {message}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children: ReactNode }) {
  return (
    <div className="empty">
      <h3>{title}</h3>
      <div>{children}</div>
    </div>
  );
}

const STATUS_TONE: Record<string, string> = {
  running: "ok",
  verified: "ok",
  failed: "bad",
  crashed: "bad",
  cancelled: "muted",
  superseded: "muted",
  stopped: "muted",
  created: "muted",
  deleting: "muted",
  pending_verification: "warn",
  firing: "bad",
  acknowledged: "warn",
  resolved: "ok",
  delivered: "ok",
  pending: "busy",
};

export function Status({ status }: { status: string }) {
  const tone = STATUS_TONE[status] ?? "busy";
  return <span className={`status status-${tone}`}>{status.replaceAll("_", " ")}</span>;
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <Button
      label={`Copy ${label}`}
      onClick={() => {
        void navigator.clipboard?.writeText(text).then(() => {
          setCopied(true);
          setTimeout(() => setCopied(false), 1500);
        });
      }}
    >
      {copied ? "Copied" : "Copy"}
    </Button>
  );
}

export function Spinner({ label }: { label: string }) {
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" /> {label}
    </p>
  );
}

export function when(at: string | null | undefined): string {
  if (!at) return "—";
  const d = new Date(at);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function duration(from: string | null | undefined, to: string | null | undefined): string {
  if (!from) return "—";
  const ms = (to ? new Date(to).getTime() : Date.now()) - new Date(from).getTime();
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
