import { useQuery } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState } from "react";
import { type Schemas, api, call } from "../../api/client";
import { Button, ErrorNote } from "../../ui/ui";

type Line = Schemas["LogLine"];
const KEEP = 2000;

/** `/apps/:id/logs`: the newest lines, then live ones (server-sent events); pause, search,
 * download. */
export function Logs({ appId }: { appId: number }) {
  const tail = useQuery({
    queryKey: ["apps", appId, "logs"],
    queryFn: () => call(api.GET("/api/apps/{id}/logs", { params: { path: { id: appId }, query: { tail: 200 } } })),
    refetchOnWindowFocus: false,
  });
  const [live, setLive] = useState<Line[]>([]);
  const [paused, setPaused] = useState(false);
  const [search, setSearch] = useState("");
  const [connected, setConnected] = useState(false);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  useEffect(() => {
    const source = new EventSource(`/api/apps/${appId}/logs/stream`);
    const take = (event: MessageEvent<string>) => {
      if (pausedRef.current) return;
      try {
        const line = JSON.parse(event.data) as Line;
        setLive((lines) => [...lines.slice(-(KEEP - 1)), line]);
      } catch {
        /* a malformed event is skipped */
      }
    };
    source.addEventListener("runtime", take);
    source.addEventListener("build", take);
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    return () => source.close();
  }, [appId]);
  const lines = useMemo(() => {
    const all = [...(tail.data?.lines ?? []), ...live];
    const needle = search.trim().toLowerCase();
    return needle ? all.filter((l) => l.line.toLowerCase().includes(needle)) : all;
  }, [tail.data, live, search]);
  const download = () => {
    const text = lines.map((l) => `${new Date(l.at_ms).toISOString()} ${l.stream} ${l.line}`).join("\n");
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `app-${appId}-logs.txt`;
    a.click();
    URL.revokeObjectURL(url);
  };
  return (
    <div className="card">
      <div className="toolbar">
        <label className="search">
          <span className="visually-hidden">Search the logs</span>
          <input type="search" placeholder="Search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <Button onClick={() => setPaused((p) => !p)}>{paused ? "Resume" : "Pause"}</Button>
        <Button onClick={download}>Download</Button>
        <span className={`live ${connected && !paused ? "live-on" : ""}`}>{paused ? "paused" : connected ? "live" : "connecting…"}</span>
      </div>
      <ErrorNote error={tail.error} />
      <pre className="log tall" data-testid="runtime-log">
        {lines.length === 0
          ? "No lines yet. What the app prints appears here."
          : lines.map((l, i) => (
              <span key={`${l.at_ms}-${i}`} className={`line line-${l.stream}`}>
                {l.line}
                {"\n"}
              </span>
            ))}
      </pre>
    </div>
  );
}
