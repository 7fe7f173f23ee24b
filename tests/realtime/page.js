// The page under test: Knock's official browser client, bundled by esbuild into one
// script. The test drives it through `window.hark`.
import Knock from "@knocklabs/client";

window.hark = {
  knock: null,
  feed: null,
  realtimeEvents: 0,

  async start({ publicKey, host, userId, userToken, channelId }) {
    const knock = new Knock(publicKey, { host });
    knock.authenticate(userId, userToken);
    const feed = knock.feeds.initialize(channelId, { archived: "exclude" });
    feed.on("items.received.realtime", () => {
      this.realtimeEvents += 1;
    });
    feed.listenForUpdates();
    await feed.fetch();
    this.knock = knock;
    this.feed = feed;
  },

  // True once the feed's Phoenix channel has been joined: messages committed after this
  // point are pushed to the page.
  joined() {
    const socket = this.knock?.client().socket;
    return Boolean(socket) && socket.channels.some((channel) => channel.state === "joined");
  },

  items() {
    return this.feed.store.getState().items.map((item) => ({
      id: item.id,
      blocks: item.blocks,
    }));
  },

  metadata() {
    return this.feed.store.getState().metadata;
  },
};
