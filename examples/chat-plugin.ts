// A minimal chat plugin: sends each message to rosey.llm.chat through the typed client and
// prints the reply. When the service says the user is rate limited it waits the `retry_after`
// seconds it was told (up to MAX_WAIT_SECONDS) and tries again, instead of hammering it.
//
//   NATS_URL=nats://127.0.0.1:4222 node --import tsx examples/chat-plugin.ts "Hello!" "Name a cat"
//
// Environment: NATS_URL (comma-separated servers, default nats://127.0.0.1:4222), CHANNEL
// (default #general), CHAT_USER (default alice), MAX_WAIT_SECONDS (default 30),
// ROSEY_SUBJECT_PREFIX (the service's subject prefix, default rosey).
// Exit status: 0 when every message got a reply, 1 otherwise.
import { connect } from "nats";
import { createClient, isTransportFailure, type RoseyLlmClient } from "../lib/client";

const servers = (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(",");
const channel = process.env.CHANNEL ?? "#general";
const user = process.env.CHAT_USER ?? "alice";
const maxWaitSeconds = Number(process.env.MAX_WAIT_SECONDS ?? 30);
const messages = process.argv.slice(2).length ? process.argv.slice(2) : ["Hello Rosey!", "What is a good name for a cat?"];

/** Tries a few times at most: a plugin should never loop forever on a busy service. */
const MAX_ATTEMPTS = 3;

const sleep = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000));

/** What the bot would post in the channel. */
const say = (text: string) => console.log(`say: ${text}`);

/** Asks one message and posts the outcome; true when the model answered. */
async function ask(llm: RoseyLlmClient, message: string): Promise<boolean> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const r = await llm.chat({ channel, user, message });
    if (r.success) {
      console.log(`reply: provider ${r.provider}, ${r.tokens_used} tokens`);
      say(r.content ?? "");
      return true;
    }
    if (isTransportFailure(r)) {
      // Nobody answered: the service is not running (no_responders) or too slow (timeout).
      console.log(`unavailable: ${r.error_code}: ${r.error}`);
      return false;
    }
    switch (r.error_code) {
      case "rate_limited":
      case "provider_unavailable": {
        const wait = r.retry_after ?? 1;
        if (wait > maxWaitSeconds || attempt === MAX_ATTEMPTS) {
          console.log(`rate limited: giving up, retry after ${wait} s (${r.error})`);
          say(`${user}: slow down a little, try again in ${wait} s.`);
          return false;
        }
        console.log(`${r.error_code === "rate_limited" ? "rate limited" : "model unavailable"}: retrying in ${wait} s`);
        await sleep(wait);
        continue;
      }
      case "quota_exceeded":
        console.log(`quota exceeded: ${r.error}`);
        say(`${user}: you have used today's share of the bot, see you tomorrow.`);
        return false;
      default:
        // validation, provider_error, internal …: a retry would not help.
        console.log(`error: ${r.error_code}: ${r.error}`);
        return false;
    }
  }
  return false;
}

const nc = await connect({ servers, name: "example-chat-plugin" });
const llm = createClient(nc, { prefix: process.env.ROSEY_SUBJECT_PREFIX ?? "rosey", timeoutMs: 30_000 });
let answered = 0;
try {
  for (const message of messages) {
    console.log(`ask: ${message}`);
    if (await ask(llm, message)) answered++;
  }
} finally {
  await nc.close();
}
console.log(`done: ${answered}/${messages.length} answered`);
process.exitCode = answered === messages.length ? 0 : 1;
