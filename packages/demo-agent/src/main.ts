// The demo agent's command: started by Usher's process driver with USHER_WORKER_URL and USHER_WORKER_TOKEN.
import { DemoAgent } from './agent.ts';

const log = (m: string) => console.log(`[demo-agent ${new Date().toISOString()}] ${m}`);

let agent: DemoAgent;
try {
  agent = new DemoAgent();
} catch (err) {
  log(`cannot start: ${err instanceof Error ? err.message : String(err)}`); // names the env vars to set
  process.exit(2);
}
agent.on('error', (err) => log(`error: ${err.message}`));
// the pid, to try a crash by hand: kill -9 <pid> (the chat demo's auto-restart brings a new agent with the list)
agent.on('connect', (a) =>
  log(`pid ${process.pid} serves session ${a.sessionId} (restarts so far: ${a.restarts})`),
);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void agent.close());
try {
  await agent.start();
} catch (err) {
  log(`could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
await agent.closed;
