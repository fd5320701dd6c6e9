// A real memesd for the browser tests: its own socket and data directory under /tmp, the HTTP
// front on a free loopback port (memesd binds port 0 and logs the address it got), an admin
// key of its own, and the real `memes` command line pointed at its socket.

import { spawn, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const MEMESD = process.env.MEMESD || path.join(ROOT, "target/debug/memesd");
export const MEMES = process.env.MEMES || path.join(ROOT, "target/debug/memes");

export class Daemon {
  /** Starts memesd with `args` added and waits until its HTTP front answers. */
  static async start(args = []) {
    for (const binary of [MEMESD, MEMES]) {
      if (!existsSync(binary)) {
        throw new Error(`${binary} is missing: build it first (cargo build --bins)`);
      }
    }
    const daemon = new Daemon();
    daemon.dir = mkdtempSync("/tmp/memes-browser-");
    daemon.socket = path.join(daemon.dir, "s.sock");
    daemon.adminKey = `memes_admin_${randomBytes(32).toString("hex")}`;
    const keys = path.join(daemon.dir, "admin-keys");
    const digest = createHash("sha256").update(daemon.adminKey).digest("hex");
    writeFileSync(keys, `ops ${digest}\n`, { mode: 0o600 });
    daemon.log = "";
    daemon.child = spawn(
      MEMESD,
      [
        "--socket", daemon.socket,
        "--data-dir", path.join(daemon.dir, "data"),
        "--http", "127.0.0.1:0",
        "--admin-keys", keys,
        ...args,
      ],
      { env: { ...process.env, MEMES_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] },
    );
    daemon.exited = new Promise((resolve) => daemon.child.on("exit", (code, signal) => resolve({ code, signal })));
    daemon.child.stderr.setEncoding("utf8");
    daemon.child.stderr.on("data", (chunk) => {
      daemon.log += chunk;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      // The line that says memesd serves names the port it was given.
      const found = daemon.log.match(/ and http:\/\/(127\.0\.0\.1:\d+)/);
      if (found) {
        daemon.base = `http://${found[1]}`;
        break;
      }
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
        throw new Error(`memesd exited before serving:\n${daemon.log}`);
      }
      if (Date.now() > deadline) throw new Error(`memesd did not start within 30 s:\n${daemon.log}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return daemon;
  }

  /** Runs `memes --json ARGS` against this daemon and answers its parsed stdout. */
  memes(...args) {
    const out = execFileSync(MEMES, ["--socket", this.socket, "--json", ...args], {
      env: { ...process.env, MEMES_NO_AUTOSTART: "1", NO_COLOR: "1" },
      encoding: "utf8",
    });
    return JSON.parse(out);
  }

  /** SIGTERM, and wait for the exit. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
    }
    return this.exited;
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
