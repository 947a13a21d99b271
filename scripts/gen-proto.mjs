// Generates TypeScript types for the gRPC API from proto/netmig/v1/*.proto into
// proto/gen/ (git-ignored), with the same options the loader uses at run time.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const protoDir = join(root, "proto", "netmig", "v1");
const out = join(root, "proto", "gen");
const files = existsSync(protoDir) ? readdirSync(protoDir).filter((f) => f.endsWith(".proto")) : [];
rmSync(out, { recursive: true, force: true });
if (files.length > 0) {
  const bin = join(root, "node_modules", "@grpc", "proto-loader", "build", "bin", "proto-loader-gen-types.js");
  execFileSync(process.execPath, [
    bin, "--keepCase", "--longs=String", "--enums=String", "--defaults", "--oneofs", "--grpcLib=@grpc/grpc-js",
    "--importFileExtension=.js", `--includeDirs=${join(root, "proto")}`, "--outDir", out,
    ...files.map((f) => join("netmig", "v1", f)),
  ], { stdio: "inherit", cwd: root });
}
