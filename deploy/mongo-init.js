// Runs once, when the webconsumerdb volume is empty: the web consumer's own user, limited to its database.
db.getSiblingDB("consumer").createUser({
  user: "webconsumer",
  pwd: process.env.MONGO_WEBCONSUMER_PASSWORD,
  roles: [{ role: "readWrite", db: "consumer" }],
});
