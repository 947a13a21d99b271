/**
 * An Open vSwitch instance per simulated host: ovsdb-server + ovs-vswitchd
 * with their own run directory, database and sockets, inside the host's
 * network namespace, bridges on the userspace (netdev) datapath. Never
 * touches the system OVS; stops its own processes by PID.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sh } from "./netns.js";
import type { CommandResult } from "../../agent/backends/common/command.js";

const SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

export class OvsInstance {
  private pids: number[] = [];

  private constructor(readonly ns: string, readonly dir: string) {}

  get dbSock(): string {
    return join(this.dir, "db.sock");
  }
  get vswitchdCtl(): string {
    return join(this.dir, "ovs-vswitchd.ctl");
  }
  mgmt(bridge: string): string {
    return `unix:${join(this.dir, `${bridge}.mgmt`)}`;
  }

  /** Environment for ctl tools so they never fall back to the system OVS. */
  get env(): Record<string, string> {
    return { OVS_RUNDIR: this.dir, OVS_DBDIR: this.dir, OVS_LOGDIR: this.dir, OVS_SYSCONFDIR: this.dir };
  }

  static async start(ns: string): Promise<OvsInstance> {
    const dir = await mkdtemp(join(tmpdir(), "netmig-ovs-"));
    const ovs = new OvsInstance(ns, dir);
    try {
      await sh(["ovsdb-tool", "create", join(dir, "conf.db"), SCHEMA]);
      await sh(
        ["ip", "netns", "exec", ns, "ovsdb-server", join(dir, "conf.db"), `--remote=punix:${ovs.dbSock}`, `--pidfile=${join(dir, "ovsdb-server.pid")}`,
          `--unixctl=${join(dir, "ovsdb-server.ctl")}`, `--log-file=${join(dir, "ovsdb-server.log")}`, "--detach", "--no-chdir"],
        { env: ovs.env },
      );
      ovs.pids.push(await ovs.pid("ovsdb-server"));
      await ovs.vsctl(["--no-wait", "init"]);
      await sh(
        ["ip", "netns", "exec", ns, "ovs-vswitchd", `unix:${ovs.dbSock}`, `--pidfile=${join(dir, "ovs-vswitchd.pid")}`,
          `--unixctl=${ovs.vswitchdCtl}`, `--log-file=${join(dir, "ovs-vswitchd.log")}`, "--detach", "--no-chdir"],
        { env: ovs.env, timeoutMs: 30_000 },
      );
      ovs.pids.push(await ovs.pid("ovs-vswitchd"));
    } catch (e) {
      await ovs.stop();
      throw e;
    }
    return ovs;
  }

  private async pid(name: string): Promise<number> {
    const text = await readFile(join(this.dir, `${name}.pid`), "utf8");
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${name}: bad pid file`);
    return pid;
  }

  vsctl(args: string[]): Promise<CommandResult> {
    return sh(["ovs-vsctl", `--db=unix:${this.dbSock}`, "--timeout=20", ...args], { env: this.env });
  }

  ofctl(args: string[], input?: string): Promise<CommandResult> {
    return sh(["ovs-ofctl", ...args], input === undefined ? { env: this.env } : { env: this.env, input });
  }

  appctl(args: string[]): Promise<CommandResult> {
    return sh(["ovs-appctl", "-t", this.vswitchdCtl, ...args], { env: this.env });
  }

  async addBridge(name: string): Promise<void> {
    await this.vsctl(["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "fail_mode=standalone"]);
  }

  /** Stops both daemons by PID (SIGTERM, then SIGKILL) and removes the run directory. */
  async stop(): Promise<void> {
    for (const pid of this.pids.splice(0).reverse()) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        continue;
      }
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
        if (i === 99) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
        }
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
