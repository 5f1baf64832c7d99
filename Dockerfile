# One image for every role: master, runner and feeder differ only by their command
# (see docker-compose.yml). TypeScript runs through tsx, so there is no build step.
FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY . .
EXPOSE 3232
CMD ["npx", "taskmaster", "--help"]
