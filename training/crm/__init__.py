"""Customer relationship views of a purchase log: RFM value segments, revenue concentration,
win-back lists, and the bought-together export."""
