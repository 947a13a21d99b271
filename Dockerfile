# netmig image: the coordinator, the agents and the demo job all run it.
#   docker build -t netmig .
#   docker run --rm netmig help
# NATS is not in this image; docker-compose.yml runs the official nats image.

# --- build: install every dependency, generate the gRPC types, compile ---
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# The sources (.dockerignore keeps node_modules, dist and generated files out).
COPY . .
RUN npm run -s build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf dist/test

# --- run: compiled code, production dependencies and the .proto the gRPC API loads at run time ---
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto/netmig ./proto/netmig
RUN ln -s /app/dist/cli/main.js /usr/local/bin/netmig \
 && chmod +x /app/dist/cli/main.js \
 && mkdir -p /var/lib/netmig
# Agents keep their state here (one volume per agent in docker-compose.yml).
VOLUME ["/var/lib/netmig"]
ENTRYPOINT ["netmig"]
CMD ["help"]
