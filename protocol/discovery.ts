/**
 * Discovery, after SuperCluster: a master announces itself in UDP datagrams (default port 44201), and
 * a tracker URL (any master) answers `GET /hostsAvailable` with the masters and runners it knows.
 */
import { z } from 'zod';

export const DISCOVERY_PORT = 44201;
/**
 * Loopback's broadcast address. On a network, set your subnet's broadcast address (e.g.
 * 192.168.1.255) on the master and keep the port open on runners; the default never leaves the machine.
 */
export const DEFAULT_BROADCAST_ADDRESS = '127.255.255.255';

export const announcementSchema = z.object({
  taskmaster: z.literal(1),
  role: z.literal('master'),
  url: z.string().url(),
  id: z.string(),
  data: z.record(z.string(), z.unknown()).default({}),
});
export type Announcement = z.infer<typeof announcementSchema>;

export const hostsAvailableSchema = z.object({
  masters: z.array(z.object({ url: z.string(), data: z.record(z.string(), z.unknown()).default({}) })),
  runners: z.array(
    z.object({
      id: z.string(),
      hostname: z.string().nullable().optional(),
      data: z.record(z.string(), z.unknown()),
    }),
  ),
});
export type HostsAvailable = z.infer<typeof hostsAvailableSchema>;
