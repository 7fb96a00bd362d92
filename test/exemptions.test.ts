// Exempt names are claims: `user` and `channel` are whatever the caller sends. By default an
// exempt name skips the limits wherever it is claimed; with ROSEY_EXEMPT_ADMIN_ONLY it only
// counts on the admin subjects, so a plugin cannot escape its limits by claiming to be the bot.
import { describe, expect, it } from "vitest";
import { loadConfig } from "../lib/config";
import { endpointSubject } from "../lib/subjects";
import { request, useService } from "./helpers/service";

const chat = endpointSubject("rosey", "chat");
const limits = (env: Record<string, string>) =>
  loadConfig({ ROSEY_LIMIT_USER_PER_MINUTE: "2", ROSEY_EXEMPT_USERS: "bot", ...env }).limits;

/** The error codes of `n` chats claiming to be `user`. */
async function chats(nc: Parameters<typeof request>[0], user: string, n: number): Promise<Array<string | undefined>> {
  const codes: Array<string | undefined> = [];
  for (let i = 0; i < n; i++) codes.push((await request(nc, chat, { channel: `#ex-${user}`, user, message: `hi ${i}` })).body.error_code);
  return codes;
}

describe("by default an exempt name skips the limits wherever it is claimed", () => {
  const svc = useService({ limits: limits({}) });

  it("so anyone who claims to be the bot chats without limit", async () => {
    expect(await chats(svc.nc, "bot", 4)).toEqual([undefined, undefined, undefined, undefined]);
    expect(await chats(svc.nc, "alice", 3)).toEqual([undefined, undefined, "rate_limited"]);
  });
});

describe("with ROSEY_EXEMPT_ADMIN_ONLY=true", () => {
  const svc = useService({ limits: limits({ ROSEY_EXEMPT_ADMIN_ONLY: "true" }) });

  it("the claim no longer lifts chat limits", async () => {
    expect(await chats(svc.nc, "bot", 3)).toEqual([undefined, undefined, "rate_limited"]);
  });

  it("the setting reads true/false/1/0 and names itself when it is anything else", () => {
    expect(limits({ ROSEY_EXEMPT_ADMIN_ONLY: "1" }).exempt_admin_only).toBe(true);
    expect(limits({ ROSEY_EXEMPT_ADMIN_ONLY: "false" }).exempt_admin_only).toBe(false);
    expect(() => limits({ ROSEY_EXEMPT_ADMIN_ONLY: "maybe" })).toThrow(/ROSEY_EXEMPT_ADMIN_ONLY/);
  });
});
