import { render } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { lastDays } from "../features/usage/Usage";
import { Bars, Sparkline, bytes, round } from "./charts";

describe("charts", () => {
  it("draws one point per value, scaled to the peak, and says so to screen readers", () => {
    const { container } = render(<Sparkline values={[0, 5, 10]} label="CPU" />);
    const line = container.querySelector("polyline");
    expect(line?.getAttribute("points")?.split(" ")).toHaveLength(3);
    // The peak sits at the top (y = 2), zero on the axis (y = 46).
    expect(line?.getAttribute("points")).toBe("0.0,46.0 120.0,24.0 240.0,2.0");
    expect(container.querySelector("svg")?.getAttribute("aria-label")).toBe("CPU: 3 points, peak 10.0");
    const empty = render(<Sparkline values={[1]} label="Memory" />);
    expect(empty.container.querySelector("svg")?.getAttribute("aria-label")).toBe("Memory: not enough figures yet");
  });

  it("draws one bar per day with its figure in a title", () => {
    const { container } = render(<Bars values={[1, 0, 3]} labels={["a", "b", "c"]} label="Requests" />);
    const titles = [...container.querySelectorAll("rect title")].map((t) => t.textContent);
    expect(titles).toEqual(["a: 1.0", "b: 0", "c: 3.0"]);
  });

  it("formats bytes and numbers, and counts UTC days back from today", () => {
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(3 * 1024 * 1024 * 1024)).toBe("3.0 GiB");
    expect(round(0.0123)).toBe("0.012");
    expect(lastDays(3, new Date("2026-03-01T05:00:00Z"))).toEqual(["2026-02-27", "2026-02-28", "2026-03-01"]);
  });
});
