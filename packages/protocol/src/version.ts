/** Version of the host<->guest protocol; a hello with another version is refused. */
export const PROTOCOL_VERSION = 1;
