# One image for every role: master, runner and feeder differ only by their command (see
# docker-compose.yml). The first stage packs the package as npm publishes it (`npm pack` compiles
# dist/); the second installs that tarball, as a user would, and runs as the unprivileged `node` user.
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm pack --pack-destination /tmp && mv /tmp/taskmaster-distributed-*.tgz /tmp/taskmaster.tgz

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
RUN chown node:node /app
USER node
COPY --from=build --chown=node:node /tmp/taskmaster.tgz /tmp/taskmaster.tgz
RUN npm init -y >/dev/null \
  && npm install --omit=dev --no-audit --no-fund /tmp/taskmaster.tgz \
  && rm /tmp/taskmaster.tgz \
  && npm cache clean --force
# The example task modules; mount your own folder over /app/tasks.
COPY --chown=node:node tasks ./tasks
ENV PATH=/app/node_modules/.bin:$PATH
EXPOSE 3232
# `taskmaster` itself, not npx: npx does not pass SIGTERM on, and a runner needs it to drain.
ENTRYPOINT ["taskmaster"]
CMD ["--help"]
