// Light, dark or the system's; the choice is kept in this browser (the inline script in
// index.html applies it before the first paint).
export type Theme = "light" | "dark" | "system";

export function currentTheme(): Theme {
  const saved = localStorage.getItem("wh-theme");
  return saved === "light" || saved === "dark" ? saved : "system";
}

export function applyTheme(theme: Theme) {
  localStorage.setItem("wh-theme", theme);
  const dark = theme === "dark" || (theme === "system" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
}
