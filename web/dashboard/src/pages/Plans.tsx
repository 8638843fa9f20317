import { useQuery } from "@tanstack/react-query";
import { api, call } from "../api/client";
import { keys } from "../api/queries";
import { ErrorNote, Spinner } from "../ui/ui";
import { PlansText } from "./static";

export function PlansPage() {
  const plans = useQuery({ queryKey: keys.plans, queryFn: () => call(api.GET("/api/plans")) });
  return (
    <PlansText>
      {plans.isPending ? <Spinner label="Loading the plans…" /> : null}
      <ErrorNote error={plans.error} />
      {plans.data ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Plans and their limits</caption>
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col">Apps</th>
                <th scope="col">Memory per app</th>
                <th scope="col">CPUs per app</th>
                <th scope="col">Custom domains</th>
                <th scope="col">Deploys a day</th>
              </tr>
            </thead>
            <tbody>
              {plans.data.map((p) => (
                <tr key={p.name}>
                  <th scope="row">{p.name}</th>
                  <td>{p.limits.apps}</td>
                  <td>{p.limits.memory_mb} MB</td>
                  <td>{p.limits.cpus}</td>
                  <td>{p.limits.custom_domains}</td>
                  <td>{p.limits.deploys_per_day}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </PlansText>
  );
}
