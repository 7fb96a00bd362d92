// The provider benchmarks' upstream: the tests' fake OpenAI-compatible server
// (test/helpers/openai-server.ts) in a process of its own, answering every chat at once.
// Prints its base URL on stdout once listening; exits on SIGTERM or when stdin closes.
//
//   node --import tsx bench/fake-openai.ts
import { startOpenAIServer } from "../test/helpers/openai-server";
import { onStop } from "./harness";

async function main() {
  const fake = await startOpenAIServer();
  // The helper records every request for tests to inspect; a benchmark sends hundreds of
  // thousands, so the record is emptied every second to keep the server's heap flat.
  let requests = 0;
  setInterval(() => {
    requests += fake.requests.length;
    fake.requests.length = 0;
  }, 1_000).unref();
  process.stdout.write(`${fake.url}\n`);
  // Connections against requests shows whether callers keep their connections alive.
  process.on("SIGUSR2", () => process.stdout.write(`${JSON.stringify({ connections: fake.connections(), requests: requests + fake.requests.length })}\n`));
  onStop(() => void fake.close().finally(() => process.exit(0)));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
