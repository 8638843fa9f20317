/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The dashboard is served by the control plane: `/assets/*` with content-hashed names, the
// pages and the SPA shell from `dist/`. `npm run dev` proxies the API to a `wisehosting dev`.
export default defineConfig({
  plugins: [react()],
  build: { target: "es2022", assetsDir: "assets", sourcemap: false },
  server: { proxy: { "/api": "http://127.0.0.1:8081" } },
  test: { environment: "happy-dom", include: ["src/**/*.test.{ts,tsx}"] },
});
