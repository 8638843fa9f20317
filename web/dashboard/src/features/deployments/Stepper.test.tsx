import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Status } from "../../ui/ui";
import { Stepper } from "./Deployments";

describe("Stepper", () => {
  it("marks the steps passed, the current one, and the rest", () => {
    render(<Stepper status="building" />);
    const steps = screen.getAllByRole("listitem");
    expect(steps.map((s) => s.className)).toEqual([
      "step step-done",
      "step step-done",
      "step step-current",
      "step step-todo",
      "step step-todo",
      "step step-todo",
      "step step-todo",
    ]);
    expect(screen.getByText("building").getAttribute("aria-current")).toBe("step");
  });

  it("crosses out what a failed deploy never reached", () => {
    const { container } = render(<Stepper status="failed" />);
    expect(container.querySelectorAll(".step-skipped")).toHaveLength(7);
  });
});

describe("Status", () => {
  it("reads as words and carries its tone", () => {
    const { container } = render(<Status status="health_checking" />);
    expect(container.textContent).toBe("health checking");
    expect(container.firstElementChild?.className).toBe("status status-busy");
  });
});
