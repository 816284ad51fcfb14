"""The study: should a mining site turn part of itself to AI? Sweeps of full-year replays over
the AI share of the site, the business model, the load shape, the contract mix, years, hubs,
hashprice paths and strategies, on a process pool or a Dask cluster. It imports what every use
shares and the replay, never the daemon.
"""
