"""The window's views: one panel or view per file, each given the controller or model it
shows, and the small widgets they share."""
