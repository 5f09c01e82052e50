#!/usr/bin/env python3
"""The sensor job in Spark Structured Streaming (PySpark, local mode), for bench/run.py.

    spark_job.py INPUT_DIR OUTPUT_DIR

Reads the NDJSON files of INPUT_DIR as a streaming file source with the sensor schema and runs,
as Spark users would, two queries until the input is used up (`availableNow`): the raw events
to zstd Parquet partitioned by date and hour, and a 1-minute tumbling window per device with a
30 s watermark (count, avg temperature, max vibration) to Parquet in append mode. Prints the
rows each query wrote as JSON.
"""

import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

SCHEMA = T.StructType([
    T.StructField("device_id", T.StringType()),
    T.StructField("ts", T.TimestampType()),
    T.StructField("temperature_c", T.DoubleType()),
    T.StructField("vibration_g", T.DoubleType()),
    T.StructField("status", T.StringType()),
    T.StructField("site", T.StringType()),
    T.StructField("line", T.StringType()),
])


def main():
    source, out = sys.argv[1], sys.argv[2]
    spark = (SparkSession.builder.master("local[*]").appName("sensor-job")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.sql.parquet.compression.codec", "zstd")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             # Window state in RocksDB, as Spark's docs advise for millions of keys (the
             # in-memory default runs out of heap on sensor-10M).
             .config("spark.sql.streaming.stateStore.providerClass",
                     "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    events = spark.readStream.schema(SCHEMA).json(source)
    raw = (events.withColumn("date", F.to_date("ts")).withColumn("hour", F.hour("ts"))
           .writeStream.format("parquet").partitionBy("date", "hour")
           .option("path", f"{out}/raw").option("checkpointLocation", f"{out}/checkpoint-raw")
           .trigger(availableNow=True).start())
    windows = (events.withWatermark("ts", "30 seconds")
               .groupBy(F.window("ts", "1 minute"), "device_id")
               .agg(F.count("*").alias("n"), F.avg("temperature_c").alias("avg_temp"),
                    F.max("vibration_g").alias("max_vib"))
               .writeStream.format("parquet").outputMode("append")
               .option("path", f"{out}/device_1m")
               .option("checkpointLocation", f"{out}/checkpoint-windows")
               .trigger(availableNow=True).start())
    raw.awaitTermination()
    windows.awaitTermination()
    written = {name: spark.read.parquet(f"{out}/{name}").count() for name in ("raw", "device_1m")}
    spark.stop()
    print(json.dumps(written))


if __name__ == "__main__":
    main()
