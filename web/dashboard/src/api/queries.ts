// Server state: one query key per resource, shared by the pages.
import { useQuery } from "@tanstack/react-query";
import { api, call } from "./client";

export const keys = {
  me: ["me"] as const,
  platform: ["platform"] as const,
  plans: ["plans"] as const,
  apps: ["apps"] as const,
  app: (id: number) => ["apps", id] as const,
  deployments: (id: number) => ["apps", id, "deployments"] as const,
  env: (id: number) => ["apps", id, "env"] as const,
  domains: (id: number) => ["apps", id, "domains"] as const,
  buildLog: (id: number) => ["deployments", id, "log"] as const,
  sessions: ["account", "sessions"] as const,
  tokens: ["account", "tokens"] as const,
  audit: ["account", "audit"] as const,
  stats: (id: number) => ["apps", id, "stats"] as const,
  history: (id: number) => ["apps", id, "stats", "history"] as const,
  rules: (id: number) => ["apps", id, "alert-rules"] as const,
  alerts: (status: string) => ["alerts", status] as const,
  webhooks: ["webhooks"] as const,
  deliveries: (id: number) => ["webhooks", id, "deliveries"] as const,
  usage: ["usage"] as const,
};

const ACTIVE = ["queued", "cloning", "building", "starting", "health_checking", "switching"];
export const isActive = (status: string) => ACTIVE.includes(status);

/** The global state; refreshed every 2 s while an app deploys, every 30 s otherwise. */
export function useMe() {
  return useQuery({
    queryKey: keys.me,
    queryFn: () => call(api.GET("/api/me")),
    refetchInterval: (q) => (q.state.data?.apps.some((a) => a.status === "deploying") ? 2000 : 30000),
  });
}

export function usePlatform() {
  return useQuery({ queryKey: keys.platform, queryFn: () => call(api.GET("/api/platform")), staleTime: 60_000 });
}

/** One app; refreshed every 2 s while its status is on the move. */
export function useApp(id: number) {
  return useQuery({
    queryKey: keys.app(id),
    queryFn: () => call(api.GET("/api/apps/{id}", { params: { path: { id } } })),
    refetchInterval: (q) => (["deploying", "deleting"].includes(q.state.data?.status ?? "") ? 2000 : 15000),
  });
}

export function useDeployments(id: number) {
  return useQuery({
    queryKey: keys.deployments(id),
    queryFn: () => call(api.GET("/api/apps/{id}/deployments", { params: { path: { id } } })),
    refetchInterval: (q) => (q.state.data?.some((d) => isActive(d.status)) ? 1500 : 15000),
  });
}
