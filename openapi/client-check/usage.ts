// How a frontend calls pbf-headless with the generated types (see README "Typed clients").
// schema.d.ts is generated: npx openapi-typescript ../openapi.json -o schema.d.ts
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Source = components["schemas"]["SourceOut"];
type Connection = components["schemas"]["ConnectionOut"];
type Problem = components["schemas"]["Problem"];
type State = Connection["state"];

const api = createClient<paths>({
  baseUrl: "https://onboarding.example.com",
  headers: { Authorization: "Bearer pbf_live_..." },
});

export async function postgresForm(): Promise<Source["config_schema"]> {
  const { data, error } = await api.GET("/v1/sources/{service}", {
    params: { path: { service: "postgres" } },
  });
  if (error) throw new Error((error as Problem).detail);
  return data.config_schema;
}

export async function connectPostgres(endUser: string): Promise<Connection | Problem> {
  const { data, error } = await api.POST("/v1/connections", {
    body: {
      end_user: endUser,
      service: "postgres",
      config: { host: "db.example.com", port: 5432, database: "app", user: "fivetran" },
      credentials: { password: "..." },
    },
  });
  if (error) {
    const problem: Problem = error;
    for (const e of problem.errors ?? []) console.log(e.field, e.code, e.message);
    return problem;
  }
  const state: State = data.state;
  if (state === "connected" || state === "setup_failed") console.log(data.id, state);
  return data;
}

export async function broken(): Promise<Connection[]> {
  const { data } = await api.GET("/v1/connections", {
    params: { query: { state: "broken", limit: 100 } },
  });
  return data?.items ?? [];
}
