// Inserts a few documents and reads them back with a cursor.
//
//   wire_quickstart [mongodb://host:port/]     (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
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
    const char* env = std::getenv("MONGODB_URI");
    const std::string uri = argc > 1 ? argv[1] : env != nullptr ? env : "mongodb://localhost:27017/";
    asio::io_context io;
    int status = 0;
    try {
        gridflow::wire::client client(io.get_executor(), uri);
        asio::co_spawn(io, run(client), [&](std::exception_ptr failure) {
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const gridflow::error& e) {
                    std::cerr << "wire_quickstart: " << e.kind() << " error: " << e.what() << "\n";
                    status = 1;
                }
            }
            // Idle pooled connections keep the io_context busy; closing the client lets run() return.
            client.close();
            io.stop();
        });
        io.run();
    } catch (const gridflow::error& e) {
        std::cerr << "wire_quickstart: " << e.what() << "\n";
        return 2;
    }
    return status;
}
