// Inserts a few documents and reads them back with a cursor.
//
//   wire_quickstart [mongodb://host:port/]     (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/wire/collection.hpp>

#include "example_main.hpp"

#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> run(gridflow::wire::client client) {
    auto animals = client.database("gridflow_examples").collection("animals");
    for (const char* name : {"marmot", "ibex", "chamois"}) {
        gridflow::bson::builder doc;
        doc.append("name", name);
        co_await animals.insert_one(doc.view());
    }
    auto cursor = co_await animals.find(gridflow::bson::document{}, {.batch_size = 2});
    while (auto doc = co_await cursor.next()) std::cout << doc->to_json() << "\n";
}

int main(int argc, char** argv) {
    return run_example("wire_quickstart", argc, argv, run);
}
