import { useMe } from "../../api/queries";
import { Empty } from "../../ui/ui";

export function UsagePage() {
  const me = useMe();
  const plan = me.data?.plan;
  return (
    <section>
      <h1>Usage</h1>
      {plan ? (
        <div className="card">
          <h2>Your plan: {plan.name}</h2>
          <dl className="facts">
            <dt>Apps</dt>
            <dd>
              {me.data?.apps.length ?? 0} of {plan.limits.apps}
            </dd>
            <dt>Memory per app</dt>
            <dd>{plan.limits.memory_mb} MB</dd>
            <dt>CPUs per app</dt>
            <dd>{plan.limits.cpus}</dd>
            <dt>Custom domains</dt>
            <dd>{plan.limits.custom_domains}</dd>
            <dt>Deploys a day</dt>
            <dd>{plan.limits.deploys_per_day}</dd>
          </dl>
        </div>
      ) : null}
      <Empty title="No usage figures yet">
        <p>CPU, memory, network and request counts of your apps over time will be shown here.</p>
      </Empty>
    </section>
  );
}
