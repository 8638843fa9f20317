import { Empty } from "../../ui/ui";

export function AlertsPage() {
  return (
    <section>
      <h1>Alerts</h1>
      <Empty title="No alerts">
        <p>When an app crash-loops, a deploy fails, or CPU or memory stay high, the alert appears here and can be acknowledged.</p>
      </Empty>
    </section>
  );
}
